"""A seeded simulator of households browsing the real H&M catalogue.

Where real data lacks a signal (clicks before a purchase, adult sizes,
who an item was for), households of personas shop in sessions that
switch between members. Each member's items come from real single-role
baskets of the week, so what a member looks at together was really
bought together. The truth (which member every event was for) is kept
so the engine can be judged against it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from rolecall.roles import Role

LETTER_SIZES = ("XS", "S", "M", "L", "XL")
CHILD_SIZES = tuple(str(n) for n in range(92, 141, 6))


@dataclass
class SimEvent:
    event_type: str
    item: int | None  # catalogue index
    filters: dict | None
    member: str  # truth: who this event was for
    role: str  # truth: that member's role key


@dataclass
class SimSession:
    session_id: str
    events: list[SimEvent] = field(default_factory=list)


@dataclass
class Member:
    name: str
    role: Role


def _household(rng: np.random.Generator) -> list[Member]:
    her = Member("her", Role("women", "adult",
                             str(rng.choice(LETTER_SIZES[:4]))))
    him = Member("partner", Role("men", "adult",
                                 str(rng.choice(LETTER_SIZES[1:]))))
    kid_gender = str(rng.choice(["girls", "boys"]))
    kid = Member("child", Role(kid_gender, "child",
                               str(rng.choice(CHILD_SIZES[3:7]))))
    return [her, him, kid]


def baskets_by_role(sessions: list[np.ndarray], genders, ages
                    ) -> dict[str, list[np.ndarray]]:
    """Real baskets of two or more items that all share one role."""
    pools: dict[str, list[np.ndarray]] = defaultdict(list)
    for items in sessions:
        if len(items) < 2:
            continue
        keys = {f"{genders[i]}/{ages[i]}" for i in items}
        if len(keys) == 1:
            pools[keys.pop()].append(items)
    return pools


def _segment(rng, member: Member, pool: list[np.ndarray],
             with_filter: bool) -> list[SimEvent]:
    basket = pool[rng.integers(len(pool))]
    n = int(min(len(basket), rng.integers(2, 5)))
    events = []
    if with_filter:
        events.append(SimEvent("filter", None, {
            "gender": member.role.gender, "size": member.role.size},
            member.name, member.role.key))
    for j, item in enumerate(basket[:n]):
        kind = "cart" if j == n - 1 and rng.random() < 0.3 else "view"
        events.append(SimEvent(kind, int(item), None, member.name,
                               member.role.key))
    return events


def simulate(sessions: list[np.ndarray], genders, ages, n: int,
             seed: int = 0) -> list[SimSession]:
    """n sessions, each visiting two or three household members in turn
    and sometimes returning to the first one."""
    rng = np.random.default_rng(seed)
    pools = baskets_by_role(sessions, genders, ages)
    out = []
    for s in range(n):
        members = [m for m in _household(rng) if pools.get(m.role.key)]
        if len(members) < 2:
            continue
        order = list(rng.permutation(len(members)))[:int(
            rng.integers(2, len(members) + 1))]
        if rng.random() < 0.5:
            order.append(order[0])  # she comes back to her own shopping
        session = SimSession(f"sim-{seed}-{s}")
        seen = set()
        for m in order:
            member = members[m]
            first_time = member.name not in seen
            seen.add(member.name)
            session.events += _segment(
                rng, member, pools[member.role.key],
                with_filter=first_time and rng.random() < 0.6)
        out.append(session)
    return out
