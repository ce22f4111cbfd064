"""Who the shopper is buying for: role derivation from item attributes.

A role is (gender, age group, size). Items give gender and age group from
the H&M index group, section and index name; kids' index names also carry
a size band in cm. Filter events (issue 3) refine the size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GENDERS = ("women", "men", "girls", "boys", "unisex")
AGE_GROUPS = ("baby", "child", "teen", "adult")

_BAND = re.compile(r"(\d{2,3})-(\d{2,3})")


@dataclass(frozen=True, slots=True)
class Role:
    gender: str | None = None
    age_group: str | None = None
    size: str | None = None

    @property
    def known(self) -> bool:
        """A role is decisive only when its age group is known."""
        return self.age_group is not None

    @property
    def key(self) -> str:
        """Stable name of the person shopped for, without the size."""
        return f"{self.gender or 'unisex'}/{self.age_group or 'unknown'}"

    def as_dict(self) -> dict[str, str | None]:
        return {"gender": self.gender, "age_group": self.age_group,
                "size": self.size, "key": self.key}


def size_band(index_name: str | None) -> str | None:
    """Child size band in cm from an index name like 'Baby Sizes 50-98'."""
    if not index_name:
        return None
    m = _BAND.search(index_name)
    return f"{m.group(1)}-{m.group(2)}" if m else None


def _kid_gender(section: str) -> str:
    s = section.lower()
    if "girl" in s:
        return "girls"
    if "boy" in s:
        return "boys"
    return "unisex"


def _kid_age(index_name: str, section: str) -> str:
    if index_name.startswith("Baby") or section.startswith("Baby"):
        return "baby"
    if "134-170" in index_name:
        return "teen"  # 134-170 cm is roughly ages 9 to 15
    return "child"


def derive_role(index_group: str | None, section: str | None,
                index_name: str | None) -> Role:
    """Role of an H&M article; unknown fields stay None (no switch)."""
    group = index_group or ""
    section = section or ""
    index_name = index_name or ""
    if group in ("Ladieswear", "Divided"):
        # Divided is H&M's young women's line: same person as Ladieswear.
        return Role("women", "adult")
    if group == "Menswear":
        return Role("men", "adult")
    if group == "Sport":
        if section.startswith("Ladies"):
            return Role("women", "adult")
        if section.startswith("Men"):
            return Role("men", "adult")
        if section.startswith("Kids"):
            return Role("unisex", "child")
        return Role()
    if group == "Baby/Children":
        return Role(_kid_gender(section), _kid_age(index_name, section),
                    size_band(index_name))
    return Role()


def fits(role: Role, item_gender: str | None,
         item_age: str | None) -> bool:
    """Whether an item suits a role; unisex and unknown items suit all."""
    if role.age_group and item_age and item_age != role.age_group:
        return False
    if role.gender in (None, "unisex") or item_gender in (None, "unisex"):
        return True
    return item_gender == role.gender


# Filter values a shop sends, mapped to the person they describe.
_FILTER_GENDERS = {"women": ("women", "adult"), "ladies": ("women", "adult"),
                   "men": ("men", "adult"), "girls": ("girls", "child"),
                   "boys": ("boys", "child"), "kids": ("unisex", "child"),
                   "children": ("unisex", "child"),
                   "baby": ("unisex", "baby")}


# Words a shop's gender filter may send (any case), and the age groups.
FILTER_GENDERS = tuple(sorted({*_FILTER_GENDERS, *GENDERS}))


def role_from_filters(filters: dict[str, str]) -> Role | None:
    """The role a filter event names, if it names one (gender / age)."""
    gender = (filters.get("gender") or "").lower()
    age = (filters.get("age_group") or "").lower() or None
    if gender in _FILTER_GENDERS:
        g, default_age = _FILTER_GENDERS[gender]
        return Role(g, age if age in AGE_GROUPS else default_age)
    if age in AGE_GROUPS:
        return Role("unisex", age)
    return None


def same_person(a: Role, b: Role) -> bool:
    """Whether two decisive roles can be the same shopper."""
    return fits(a, b.gender, b.age_group)


def next_role(active: Role | None, seen: Role) -> tuple[Role, bool]:
    """The active role after a decisive event, and whether it switched.

    A role that fits the active one refines it (a unisex child becomes a
    girl) without a switch; one that does not fit switches at once.
    """
    if active is None:
        return seen, False
    if same_person(active, seen):
        if active.gender in (None, "unisex") and seen.gender not in (
                None, "unisex"):
            return Role(seen.gender, active.age_group, active.size), False
        return active, False
    return seen, True


def active_first(event_roles: list[str | None],
                 active: str | None) -> list[int]:
    """Event order for encoding: other roles' events first, then the
    active role's (and undecided) events, each in time order, so the
    session tower's recency weighting falls on the active role."""
    others = [i for i, r in enumerate(event_roles)
              if r is not None and r != active]
    mine = [i for i, r in enumerate(event_roles)
            if r is None or r == active]
    return others + mine


def size_fits(size: str | None, item_sizes: list[str] | None) -> bool:
    """Unknown sizes on either side fit: only a known mismatch excludes."""
    return size is None or not item_sizes or size in item_sizes
