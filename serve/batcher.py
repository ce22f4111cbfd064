"""Micro-batching: concurrent clicks share one encode and one search.

On a GPU, one session row per forward pass and per search leaves the
device idle; clicks that arrive within a short window are gathered and
sent through `Engine.retrieve_many` together. The first click of a batch
waits at most the window; every click gets exactly what `retrieve` alone
would have given it (tests/test_batching.py).

The batch runs on the event loop thread, as single clicks do: the
look-alike feed adds states to the bank on that thread, and FAISS does
not allow an add beside a search in another thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from serve.engine import Answer, Engine, Found, Where
from serve.sessions import Session

log = logging.getLogger(__name__)


def window_ms(configured: float | None, engine: Engine) -> float:
    """The window in force: the configured one, or 2 ms on a GPU and
    off on a CPU."""
    if configured is not None:
        if configured < 0:
            raise ValueError(f"serve.batch_window_ms: 0 or more (0 turns "
                             f"micro-batching off); found {configured}")
        return configured
    return 2.0 if engine.device.type == "cuda" else 0.0


@dataclass
class _Waiting:
    engine: Engine
    items: list[int]
    types: list[int]
    future: asyncio.Future
    since: float


class MicroBatcher:
    def __init__(self, window_ms: float, max_batch: int):
        if max_batch < 1:
            raise ValueError(f"serve.max_batch: at least 1; found "
                             f"{max_batch}")
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0
        self.clicks = 0

    async def retrieve(self, engine: Engine, items: list[int],
                       types: list[int],
                       timing: dict[str, float]) -> Found:
        """This click's retrieval, done in the next batch."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(engine, items, types, loop.create_future(),
                           time.perf_counter())
        self._waiting.append(waiting)
        if len(self._waiting) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window_s, self._flush)
        found, batch_ms = await waiting.future
        timing.update(batch_wait=_ms(time.perf_counter() - waiting.since
                                     - batch_ms / 1000.0),
                      retrieve_batch=batch_ms)
        return found

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        # A bundle swap between two clicks of a window: each engine
        # answers its own clicks.
        groups: dict[int, list[_Waiting]] = {}
        for w in waiting:
            groups.setdefault(id(w.engine), []).append(w)
        for group in groups.values():
            self._run(group)

    def _run(self, group: list[_Waiting]) -> None:
        started = time.perf_counter()
        try:
            found = group[0].engine.retrieve_many(
                [(w.items, w.types) for w in group])
        except Exception as exc:  # every waiting click hears of it
            log.exception("batched retrieval of %d clicks failed",
                          len(group))
            for w in group:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        batch_ms = _ms(time.perf_counter() - started)
        self.batches += 1
        self.clicks += len(group)
        for w, f in zip(group, found):
            if not w.future.done():  # its request may have gone away
                w.future.set_result((f, batch_ms))


async def recommend(batcher: MicroBatcher | None, engine: Engine,
                    session: Session, k: int,
                    history: list[int] | None,
                    where: Where | None = None) -> Answer:
    """Engine.recommend, with retrieval batched when a batcher runs."""
    if batcher is None:
        return engine.recommend(session, k, history, where)
    query = engine.query(session, history, where)
    timing: dict[str, float] = {}
    found = (await batcher.retrieve(engine, query.items, query.types,
                                    timing) if query.items else None)
    return engine.answer(query, k, found, timing)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
