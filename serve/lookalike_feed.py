"""Finished online sessions join the look-alike bank without a retrain.

A session finishes at a purchase (at once, before the answer, so the
next request already sees it) or once idle for lookalike_idle_s (a
background sweep). Each state of the session that has a future, that is
every item event but the last, is encoded by the engine serving now and
added to its bank with the items that followed, as training builds it.

A session that goes on after a purchase adds only its new states later;
the states added earlier keep the futures they had then. Each process
feeds its own bank: processes behind one port do not share additions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from rolecall.events import EVENT_INDEX
from rolecall.lookalikes import futures_matrix
from serve.engine import Engine
from serve.sessions import Session, SessionStore, StoreUnavailable

log = logging.getLogger(__name__)


class LookalikeFeed:
    def __init__(self, engine: Callable[[], Engine], store: SessionStore,
                 idle_s: float):
        self._engine = engine  # read per use: a hot swap may replace it
        self.store = store
        self.idle_s = idle_s
        self.added = 0  # states added since start
        self._idle: dict[str, float] = {}  # session -> last seen
        self._done: dict[str, int] = {}  # session -> item events added

    def note(self, session: Session) -> None:
        """Called after each stored event of a session."""
        self._idle[session.session_id] = session.last_seen
        last = session.events[-1] if session.events else None
        if last is not None and last.event_type == "purchase":
            self.finish([session])

    def sweep(self, now: float | None = None) -> int:
        """Finish the sessions idle past idle_s; returns states added."""
        cutoff = (time.time() if now is None else now) - self.idle_s
        idle = [sid for sid, seen in self._idle.items() if seen <= cutoff]
        sessions = [s for s in map(self.store.get, idle) if s is not None]
        added = self.finish(sessions)
        for sid in idle:
            self._idle.pop(sid, None)
            self._done.pop(sid, None)
        return added

    def finish(self, sessions: list[Session]) -> int:
        engine = self._engine()
        vectors, rows, ids = [], [], []
        for s in sessions:
            events = s.item_events()
            start = self._done.get(s.session_id, 0)
            items = [e.item for e in events]
            types = [EVENT_INDEX[e.event_type] for e in events]
            # States at positions start..n-2: each has a later item.
            for t in range(start, len(items) - 1):
                vectors.append(engine.encode(items[:t + 1],
                                             types[:t + 1])[:-1])
                rows.append((np.array(items, np.int64), t))
                ids.append(s.session_id)
            self._done[s.session_id] = max(len(items) - 1, start)
        if not vectors:
            return 0
        bank = engine.bundle.bank
        futures = futures_matrix(
            [r[0] for r in rows], np.arange(len(rows)),
            np.array([r[1] for r in rows]), bank.futures.shape[1],
            engine.future_decay)
        bank.add(np.stack(vectors), futures, ids)
        self.added += len(ids)
        log.debug("look-alike bank +%d states from %d sessions",
                  len(ids), len(sessions))
        return len(ids)

    async def run(self) -> None:
        """Sweep now and then, until cancelled."""
        period = max(min(self.idle_s / 4, 60.0), 0.05)
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep()
            except StoreUnavailable as exc:
                # The idle sessions stay noted; the next sweep tries
                # again, once the store is back.
                log.warning("look-alike sweep skipped: %s", exc)
