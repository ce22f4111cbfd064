"""Prometheus metrics: per-endpoint latency, per-stage timings, sessions,
requests shed under overload."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

REGISTRY = CollectorRegistry()
# Buckets from 0.25 ms: the engine's own budget is a few milliseconds.
_BUCKETS = (.00025, .0005, .001, .002, .003, .005, .0075, .01, .02, .05,
            .1, .25, 1.0)
REQUESTS = Counter("rolecall_requests_total", "HTTP requests",
                   ["endpoint", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("rolecall_request_seconds", "Request latency",
                    ["endpoint"], buckets=_BUCKETS, registry=REGISTRY)
STAGE = Histogram("rolecall_stage_seconds", "Time per stage of a click",
                  ["stage"], buckets=_BUCKETS, registry=REGISTRY)
SESSIONS = Gauge("rolecall_sessions", "Live sessions held",
                 registry=REGISTRY)
SHED = Counter("rolecall_shed_total", "Requests answered 503 because "
               "the server was past capacity", ["endpoint", "reason"],
               registry=REGISTRY)
BUNDLE = Gauge("rolecall_bundle_info", "Bundle being served",
               ["version"], registry=REGISTRY)


# Labelled series, looked up once: labels() takes a lock and builds a
# key on every call, ten times a click.
_series: dict[tuple, object] = {}


def _one(metric, *labels):
    key = (metric, *labels)
    series = _series.get(key)
    if series is None:
        series = _series[key] = metric.labels(*labels)
    return series


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    started = time.perf_counter()
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    response = await handler(request)
    _one(LATENCY, endpoint).observe(time.perf_counter() - started)
    _one(REQUESTS, endpoint, request.method, response.status).inc()
    return response


def observe_stages(timing_ms: dict[str, float]) -> None:
    for stage, ms in timing_ms.items():
        _one(STAGE, stage).observe(ms / 1000.0)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
