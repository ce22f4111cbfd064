"""Live session state and the store that holds it.

The store is an interface so that a shared store (Redis, issue 6) can
replace the in-memory default without touching the handlers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass
class Event:
    event_id: str
    ts: float
    event_type: str
    item: int | None = None  # catalogue index
    filters: dict | None = None
    user_id: str | None = None
    role: str | None = None  # role key this event was for, when decisive


@dataclass
class Session:
    """One visit. Plain data only, so any store can hold it as JSON."""

    session_id: str
    user_id: str | None = None
    device_id: str | None = None
    events: list[Event] = field(default_factory=list)
    last_seen: float = field(default_factory=time.time)
    active_role: str | None = None
    # role key -> {"gender", "age_group", "size"} as last seen
    roles: dict[str, dict] = field(default_factory=dict)

    def item_events(self) -> list[Event]:
        return [e for e in self.events if e.item is not None]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Session:
        data = dict(data)
        data["events"] = [Event(**e) for e in data.get("events", [])]
        return cls(**data)


class SessionStore(Protocol):
    def get(self, session_id: str) -> Session | None: ...

    def put(self, session: Session) -> None: ...

    def delete(self, session_id: str) -> None: ...

    def items(self) -> list[tuple[str, Session]]: ...

    def __len__(self) -> int: ...


class MemoryStore:
    """Sessions in this process, least recently seen evicted at the cap."""

    def __init__(self, max_sessions: int = 1_000_000):
        self.max_sessions = max_sessions
        self._data: OrderedDict[str, Session] = OrderedDict()

    def get(self, session_id: str) -> Session | None:
        return self._data.get(session_id)

    def put(self, session: Session) -> None:
        self._data[session.session_id] = session
        self._data.move_to_end(session.session_id)
        while len(self._data) > self.max_sessions:
            self._data.popitem(last=False)

    def delete(self, session_id: str) -> None:
        self._data.pop(session_id, None)

    def items(self):
        """(session_id, session) pairs; for admin scans, not per click."""
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)
