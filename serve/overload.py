"""Load shedding: past capacity, a quick 503 instead of a growing queue.

A click's model work runs on the event loop (README, "not supported
yet"), so a server sent more than it can answer would otherwise keep
every request, answer each later than the last, and spend its core on
answers whose shoppers have given up. Here admission has a line:

- at most max_inflight requests are in their handlers at once; a few
  overlap usefully (the event log's group commit shares one fsync);
- at most max_queue more wait for a place, first come first served;
  one more is answered 503 at once, which costs microseconds;
- a request that waited longer than max_queue_ms is answered 503 when
  its turn comes: its answer would come too late to be shown.

Every 503 carries Retry-After and a JSON error body, and is counted in
rolecall_shed_total. Health, ping and metrics pass untouched, so a
load balancer and Prometheus still see a busy server. Time a request
spends before this middleware (in the kernel's socket buffer, or
behind the loop's current turn) is not seen; it stays about one loop
turn, since a turn handles at most max_inflight requests.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from serve.errors import ApiError
from serve.metrics import SHED

NEVER_SHED = frozenset({"/healthz", "/v1/ping", "/metrics"})


class Admission:
    """Places for requests in handlers, and a line for those waiting."""

    def __init__(self, max_inflight: int, max_queue: int,
                 max_queue_ms: float, retry_after_s: int):
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.max_wait_s = max_queue_ms / 1000
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.waiting = 0
        self._places = (asyncio.Semaphore(max_inflight)
                        if max_inflight > 0 else None)

    def _shed(self, reason: str, endpoint: str) -> web.Response:
        SHED.labels(endpoint, reason).inc()
        return ApiError(
            503, "overloaded",
            f"fewer requests at once: retry after {self.retry_after_s} s",
            f"{self.inflight} requests in progress, {self.waiting} "
            f"waiting ({reason})",
            retry_after=self.retry_after_s).response()

    async def handle(self, request: web.Request, handler,
                     endpoint: str) -> web.StreamResponse:
        if self._places is None:
            return await handler(request)
        if self._places.locked():  # full, or others already waiting
            if self.waiting >= self.max_queue:
                return self._shed("queue_full", endpoint)
            queued = time.perf_counter()
            self.waiting += 1
            try:
                await self._places.acquire()
            finally:
                self.waiting -= 1
            waited = time.perf_counter() - queued
            if self.max_wait_s > 0 and waited > self.max_wait_s:
                self._places.release()
                return self._shed("waited_too_long", endpoint)
        else:
            await self._places.acquire()
        self.inflight += 1
        try:
            return await handler(request)
        finally:
            self.inflight -= 1
            self._places.release()


ADMISSION = web.AppKey("admission", Admission)


@web.middleware
async def overload_middleware(request: web.Request, handler):
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    if endpoint in NEVER_SHED:
        return await handler(request)
    return await request.app[ADMISSION].handle(request, handler,
                                               endpoint)
