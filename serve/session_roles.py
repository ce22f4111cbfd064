"""Applying role changes to a live session, event by event.

The rules (what is decisive, what switches) live in rolecall/roles.py;
this module keeps a session's contexts: one per role it has seen, with
that role's size, so returning to a role brings its size back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rolecall.roles import Role, next_role, role_from_filters
from serve.sessions import Event, Session


@dataclass
class RoleChange:
    switched: bool
    previous: str | None


def _role(data: dict | None) -> Role | None:
    if not data:
        return None
    return Role(data.get("gender"), data.get("age_group"), data.get("size"))


def _store(session: Session, role: Role) -> None:
    old = session.roles.get(role.key, {})
    size = role.size or old.get("size")
    session.roles[role.key] = {"gender": role.gender,
                               "age_group": role.age_group, "size": size}


def active(session: Session) -> Role | None:
    if session.active_role is None:
        return None
    return _role(session.roles.get(session.active_role))


def apply(session: Session, event: Event,
          item_role: Role | None) -> RoleChange:
    """Update the active role for one event and tag the event with it."""
    previous = session.active_role
    seen = item_role
    size = None
    if event.event_type == "filter" and event.filters:
        seen = role_from_filters(event.filters)
        size = event.filters.get("size")
    current = active(session)
    switched = False
    if seen is not None and seen.known:
        new, switched = next_role(current, seen)
        if previous and not switched and new.key != previous:
            # A refinement (unisex child -> girl) renames the context.
            # New events, not changed ones: a draft shares its events
            # with the stored session (Session.draft).
            session.roles.pop(previous, None)
            session.events = [replace(e, role=new.key)
                              if e.role == previous else e
                              for e in session.events]
        _store(session, new)
        session.active_role = new.key
    if size and session.active_role:
        session.roles[session.active_role]["size"] = str(size)[:16]
    decisive = seen is not None and seen.known
    event.role = session.active_role if decisive else None
    return RoleChange(switched, previous)


def record(session: Session, event: Event, item_role: Role | None,
           max_events: int, now: float) -> RoleChange:
    """One accepted event into its session: the role it implies, the
    last max_events events kept, and the time it was last seen."""
    change = apply(session, event, item_role)
    session.events = (session.events + [event])[-max_events:]
    session.last_seen = now
    return change
