"""Live session state and the store that holds it.

The store is an interface so that a shared store (Redis, issue 6) can
replace the in-memory default without touching the handlers.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
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

    def draft(self) -> Session:
        """A copy to apply an event to while this one stays as it is:
        the events list and role contexts are copied, the events shared
        (an event already in a session is replaced, never changed)."""
        return Session(self.session_id, self.user_id, self.device_id,
                       list(self.events), self.last_seen, self.active_role,
                       {key: dict(ctx) for key, ctx in self.roles.items()})

class StoreUnavailable(Exception):
    """The session store cannot be reached; the answer is a 503."""


class SessionStore(Protocol):
    def get(self, session_id: str) -> Session | None: ...

    def put(self, session: Session) -> None: ...

    def delete(self, session_id: str) -> None: ...

    def items(self) -> list[tuple[str, Session]]: ...

    def __len__(self) -> int: ...


class MemoryStore:
    """Sessions in this process, bounded two ways.

    Kept in write order, so the least recently seen are first: beyond
    max_sessions the first go, and each put removes up to
    expire_per_put sessions idle past ttl_s from the front. That costs
    O(1) amortised per put with no sweep. A session written without a
    new last_seen (identify, logout) may sit behind a fresher one
    until that one goes, so get() and items() hide expired ones too.
    """

    def __init__(self, max_sessions: int = 1_000_000,
                 ttl_s: float = float("inf"), expire_per_put: int = 8,
                 clock: Callable[[], float] = time.time):
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.expire_per_put = expire_per_put
        self.clock = clock  # compared with Session.last_seen
        self.expired = 0  # removed for idling, since start
        self.evicted = 0  # removed at the cap, since start
        self._data: OrderedDict[str, Session] = OrderedDict()

    def get(self, session_id: str) -> Session | None:
        session = self._data.get(session_id)
        if session is not None and self._stale(session, self.clock()):
            del self._data[session_id]
            self.expired += 1
            return None
        return session

    def put(self, session: Session) -> None:
        self._data[session.session_id] = session
        self._data.move_to_end(session.session_id)
        while len(self._data) > self.max_sessions:
            self._data.popitem(last=False)
            self.evicted += 1
        self._expire(self.expire_per_put)

    def _stale(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self.ttl_s

    def _expire(self, budget: int) -> None:
        now = self.clock()
        for _ in range(budget):
            if not self._data:
                return
            sid, oldest = next(iter(self._data.items()))
            if not self._stale(oldest, now):
                return
            del self._data[sid]
            self.expired += 1

    def delete(self, session_id: str) -> None:
        self._data.pop(session_id, None)

    def items(self):
        """(session_id, session) pairs; for admin scans, not per click."""
        now = self.clock()
        return [(sid, s) for sid, s in self._data.items()
                if not self._stale(s, now)]

    def __len__(self) -> int:
        """Sessions held, expired ones not yet removed included."""
        return len(self._data)


class SessionLocks:
    """One asyncio lock per session id while a request holds or waits
    for it: a session's clicks are applied one at a time, in order."""

    def __init__(self):
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, session_id: str):
        lock, users = self._held.get(session_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._held[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[session_id]
            if users == 1:
                del self._held[session_id]
            else:
                self._held[session_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._held)
