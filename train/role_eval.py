"""Role evaluation: does the answer follow the shopper's role changes?

Sessions are replayed event by event through the served engine (the
same code that answers HTTP), and through baselines, on real H&M test
baskets that mix roles and on simulated household sessions. Positions:

- after a switch: the latest event's role differs from the one before
  it, so the engine can know the new role. HR@12 and role consistency@12
  (share of the top 12 that fits the latest event's role).
- hidden switch: the next item starts a new role that nothing in the
  prefix shows. HR@12, reported but not a target.
- same role: neither. HR@12.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from rolecall.bundle import Bundle
from rolecall.config import RankingConfig, ServeConfig
from rolecall.roles import Role, next_role, role_from_filters, same_person
from serve import session_roles
from serve.engine import Engine
from serve.sessions import Event, Session
from train.baselines import make_baseline
from train.simulate import SimEvent, SimSession

log = logging.getLogger(__name__)
K = 12


@dataclass
class Position:
    events: list[SimEvent]  # the prefix
    target: int
    kind: str  # after_switch | hidden_switch | same_role
    role: Role | None  # latest decisive role
    since_switch: int  # events since the last observed switch


def _decisive(ev: SimEvent, engine: Engine) -> Role | None:
    if ev.event_type == "filter":
        return role_from_filters(ev.filters or {})
    role = engine.role_of(ev.item)
    return role if role.known else None


def positions(sessions: list[SimSession], engine: Engine) -> list[Position]:
    out = []
    for s in sessions:
        active, switched_at = None, None
        for j, ev in enumerate(s.events):
            has_item = any(e.item is not None for e in s.events[:j])
            if ev.item is not None and has_item:
                target_role = engine.role_of(ev.item)
                after = switched_at == j - 1
                hidden = (not after and active is not None
                          and target_role.known
                          and not same_person(active, target_role))
                kind = ("after_switch" if after else
                        "hidden_switch" if hidden else "same_role")
                since = j - switched_at if switched_at is not None else -1
                out.append(Position(s.events[:j], ev.item, kind, active,
                                    since))
            seen = _decisive(ev, engine)
            if seen is not None:
                active, switched = next_role(active, seen)
                if switched:
                    switched_at = j
                if ev.event_type == "filter" and ev.filters.get("size"):
                    active = Role(active.gender, active.age_group,
                                  ev.filters["size"])
    return out


EXACT = ServeConfig(item_index="flat", lookalike_index="flat")


class EngineMethod:
    def __init__(self, name: str, bundle: Bundle, ranking: RankingConfig):
        self.name = name
        # Exact search, as in the next-item evaluation.
        self.engine = Engine(bundle, ranking, EXACT)

    def top(self, events: list[SimEvent]) -> list[int]:
        session = Session("eval")
        for n, ev in enumerate(events):
            event = Event(str(n), float(n), ev.event_type, ev.item,
                          ev.filters)
            role = (self.engine.role_of(ev.item) if ev.item is not None
                    else None)
            session_roles.apply(session, event, role)
            session.events.append(event)
        return [a.item for a in self.engine.recommend(session, K).items]


class BaselineMethod:
    def __init__(self, name: str, fit_sessions, start_ts, n_items,
                 engine: Engine, boost: float = 0.0):
        base = name.split(" ")[0]
        self.name = name
        self.model = make_baseline(base).fit(fit_sessions, start_ts,
                                             n_items)
        self.engine, self.boost = engine, boost

    def top(self, events: list[SimEvent]) -> list[int]:
        items = np.array([e.item for e in events if e.item is not None])
        scores = self.model.score(items).astype(np.float64)
        if self.boost:
            role = None
            for ev in events:
                seen = _decisive(ev, self.engine)
                if seen is not None:
                    role, _ = next_role(role, seen)
            mask = self.engine.fits(role)
            if mask is not None:
                scores = scores * np.where(mask, 1.0 + self.boost, 1.0)
        scores[items] = -np.inf
        best = np.argsort(-scores, kind="stable")[:K]
        return [int(i) for i in best if scores[i] > 0]


@dataclass
class RoleTable:
    source: str
    rows: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_markdown(self) -> str:
        cols = ["HR@12 after switch", "consistency@12 after switch",
                "HR@12 hidden switch", "HR@12 same role",
                "events to consistency 0.9", "size fit@12",
                "ms after switch", "ms same role"]
        n = self.counts
        lines = [f"**{self.source}** ({n.get('after_switch', 0)} positions"
                 f" after a switch, {n.get('hidden_switch', 0)} hidden, "
                 f"{n.get('same_role', 0)} same role)", "",
                 "| method | " + " | ".join(cols) + " |",
                 "|---" * (len(cols) + 1) + "|"]
        for name, m in self.rows.items():
            cells = ["-" if m.get(c) is None else f"{m[c]:.3f}"
                     for c in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def score(method, pos: list[Position], engine: Engine) -> dict:
    hits, cons = defaultdict(list), defaultdict(list)
    size_fit, by_since = [], defaultdict(list)
    ms = defaultdict(list)
    for p in pos:
        t0 = time.perf_counter()
        top = method.top(p.events)
        ms[p.kind].append((time.perf_counter() - t0) * 1000)
        hits[p.kind].append(p.target in top)
        if p.role is not None and top:
            mask = engine.fits(Role(p.role.gender, p.role.age_group))
            share = float(mask[top].mean())
            cons[p.kind].append(share)
            if p.since_switch >= 1:
                by_since[p.since_switch].append(share)
            if p.role.size:
                sized = engine.fits(p.role)
                size_fit.append(float(sized[top].mean()))
    steps = next((s for s in sorted(by_since)
                  if np.mean(by_since[s]) >= 0.9), None)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {"HR@12 after switch": mean(hits["after_switch"]),
            "consistency@12 after switch": mean(cons["after_switch"]),
            "HR@12 hidden switch": mean(hits["hidden_switch"]),
            "HR@12 same role": mean(hits["same_role"]),
            "events to consistency 0.9": steps,
            "size fit@12": mean(size_fit),
            # Whole replay of the prefix per position: a switch should
            # cost no more than staying in one role.
            "ms after switch": _median(ms["after_switch"]),
            "ms same role": _median(ms["same_role"])}


def _median(xs: list[float]) -> float | None:
    return float(np.median(xs)) if xs else None


def real_mixed_sessions(items: list[np.ndarray], engine: Engine,
                        limit: int) -> list[SimSession]:
    """Real baskets whose decisive item roles are more than one person."""
    out = []
    for n, basket in enumerate(items):
        roles = {engine.role_of(int(i)).key for i in basket
                 if engine.role_of(int(i)).known}
        if len(basket) >= 2 and len(roles) > 1:
            out.append(SimSession(f"real-{n}", [
                SimEvent("purchase", int(i), None, "?",
                         engine.role_of(int(i)).key) for i in basket]))
        if len(out) == limit:
            break
    return out


def evaluate_roles(bundle: Bundle, ranking: RankingConfig,
                   sources: dict[str, list[SimSession]],
                   fit_items: list[np.ndarray],
                   fit_ts: np.ndarray) -> list[RoleTable]:
    off = RankingConfig(**{**ranking.__dict__, "role_mode": "off",
                           "role_encoding": "off"})
    aware = EngineMethod("two-tower + look-alikes, role-aware", bundle,
                         ranking)
    n_items = len(bundle.item_ids)
    methods = [aware,
               EngineMethod("two-tower + look-alikes, role-unaware",
                            bundle, off),
               BaselineMethod("cooc", fit_items, fit_ts, n_items,
                              aware.engine),
               BaselineMethod("vsknn", fit_items, fit_ts, n_items,
                              aware.engine),
               BaselineMethod("vsknn + same-role boost", fit_items, fit_ts,
                              n_items, aware.engine, boost=1.0)]
    tables = []
    for source, sessions in sources.items():
        pos = positions(sessions, aware.engine)
        table = RoleTable(source)
        for p in pos:
            table.counts[p.kind] = table.counts.get(p.kind, 0) + 1
        for m in methods:
            t0 = time.perf_counter()
            table.rows[m.name] = score(m, pos, aware.engine)
            log.info("roles, %s, %s: %s (%.0fs)", source, m.name,
                     table.rows[m.name], time.perf_counter() - t0)
        tables.append(table)
    return tables
