"""Load generator: replays real sessions against a running server.

Run as its own process (`python -m rolecall.loadgen ...`), pinned to a
core the server does not use, so that client and server never share a
CPU and the numbers are the server's. Two shapes of load:

- open loop: request i is due at i / rate seconds, whether or not
  earlier answers came back, as real shoppers do not wait for each
  other. Latency counts from the due time, so a stalled server cannot
  hide its queue (no coordinated omission).
- closed loop: `concurrency` shoppers, each clicking through a session
  and waiting for every answer before the next click.

Clicks of one session are replayed in order. In the open loop `lanes`
sessions run interleaved, so one session's next click comes `lanes`
requests later, not back to back. The result is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Result:
    mode: str  # open | closed
    endpoint: str  # events | ping
    target: float  # rate (open) or concurrency (closed)
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    throughput: float = 0.0  # answered OK per second
    latency_ms: dict[str, float] = field(default_factory=dict)
    send_lag_ms: dict[str, float] = field(default_factory=dict)
    # The generator's own CPU seconds per wall second, on its one core:
    # far below 1.0 means the client was not the bottleneck.
    client_cpu: float = 0.0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.percentile(np.asarray(values), [50, 90, 99, 99.9])
    return {name: round(float(v), 3)
            for name, v in zip(("p50", "p90", "p99", "p99.9"), q)}


def replay(sessions: list[list], tag: str
           ) -> Iterator[tuple[str, list[str]]]:
    """The sessions forever, each pass under fresh session ids.

    Fresh ids make a replayed session start empty instead of growing
    from the last pass.
    """
    rounds = 0
    while True:
        for sid, items in sessions:
            yield f"{tag}-{rounds}-{sid}", items
        rounds += 1


def clicks(sessions: list[list], tag: str, lanes: int
           ) -> Iterator[tuple[str, str]]:
    """(session_id, item_id) forever: `lanes` sessions interleaved."""
    stream = replay(sessions, tag)
    active = [next(stream) for _ in range(lanes)]
    pos = [0] * lanes
    while True:
        for lane in range(lanes):
            sid, items = active[lane]
            yield sid, items[pos[lane]]
            pos[lane] += 1
            if pos[lane] == len(items):
                active[lane], pos[lane] = next(stream), 0


class Runner:
    def __init__(self, url: str, endpoint: str, stages: bool,
                 timeout_s: float):
        self.url, self.endpoint, self.stages = url, endpoint, stages
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: dict[str, int] = {}
        self.stage_ms: dict[str, list[float]] = {}
        self.sent = 0

    async def one(self, http: aiohttp.ClientSession, sid: str, item: str,
                  due: float) -> None:
        start = time.perf_counter()
        self.lags.append(start - due)
        self.sent += 1
        try:
            if self.endpoint == "ping":
                req = http.get(f"{self.url}/v1/ping", timeout=self.timeout)
            else:
                req = http.post(f"{self.url}/v1/events", json={
                    "session_id": sid, "event_type": "click",
                    "item_id": item}, timeout=self.timeout)
            async with req as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._error(type(exc).__name__)
            return
        if status != 200:
            self._error(f"http {status}")
            return
        self.latencies.append(time.perf_counter() - due)
        if self.stages:
            for name, ms in json.loads(raw)["timing_ms"].items():
                self.stage_ms.setdefault(name, []).append(ms)

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def open_loop(run: Runner, stream, rate: float,
                    duration: float, connections: int) -> float:
    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as http:
        tasks = set()
        t0 = time.perf_counter()
        n = int(rate * duration)
        for i in range(n):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            sid, item = next(stream)
            task = asyncio.create_task(run.one(http, sid, item, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0


async def closed_loop(run: Runner, sessions: list[list], tag: str,
                      concurrency: int, duration: float) -> float:
    conn = aiohttp.TCPConnector(limit=concurrency)
    stream = replay(sessions, tag)

    async def shopper(http):
        while time.perf_counter() < end:
            sid, items = next(stream)  # a whole session, in order
            for item in items:
                if time.perf_counter() >= end:
                    return
                await run.one(http, sid, item, time.perf_counter())

    async with aiohttp.ClientSession(connector=conn) as http:
        t0 = time.perf_counter()
        end = t0 + duration
        await asyncio.gather(*(shopper(http) for _ in range(concurrency)))
        return time.perf_counter() - t0


async def drive(args: argparse.Namespace) -> Result:
    sessions = json.loads(Path(args.sessions).read_text())
    run = Runner(args.url, args.endpoint, args.stages, args.timeout)
    cpu0 = time.process_time()
    if args.mode == "open":
        stream = clicks(sessions, args.tag, args.lanes)
        wall = await open_loop(run, stream, args.rate, args.duration,
                               args.connections)
        target = args.rate
    else:
        wall = await closed_loop(run, sessions, args.tag,
                                 args.concurrency, args.duration)
        target = args.concurrency
    cpu = time.process_time() - cpu0
    ok = len(run.latencies)
    return Result(
        mode=args.mode, endpoint=args.endpoint, target=target,
        duration_s=round(wall, 3), sent=run.sent, ok=ok,
        errors=sum(run.errors.values()), error_kinds=run.errors,
        throughput=round(ok / wall, 1),
        latency_ms=percentiles([x * 1e3 for x in run.latencies]),
        send_lag_ms=percentiles([x * 1e3 for x in run.lags]),
        client_cpu=round(cpu / wall, 3), stages_ms=run.stage_ms)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rolecall.loadgen",
                                description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", required=True,
                   help="JSON list of [session_id, [item_id, ...]]")
    p.add_argument("--mode", choices=("open", "closed"), default="open")
    p.add_argument("--endpoint", choices=("events", "ping"),
                   default="events")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--lanes", type=int, default=64)
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--tag", default="bench")
    p.add_argument("--stages", action="store_true",
                   help="collect the server's timing_ms per answer")
    p.add_argument("--out", help="write the result here, not stdout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Result:
    args = parse_args(argv)
    result = asyncio.run(drive(args))
    text = json.dumps(asdict(result))
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return result


if __name__ == "__main__":
    main()
