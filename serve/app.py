"""The aiohttp app factory; the engine and stores live in typed app keys."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from aiohttp import web

from rolecall.bundle import load
from rolecall.config import Config
from rolecall.eventlog import read_records
from serve import admin_routes, handlers, live_catalog, session_roles
from serve.batcher import MicroBatcher
from serve.batcher import window_ms as batch_window
from serve.engine import Engine
from serve.errors import error_middleware
from serve.eventlog import EventLog, rebuild
from serve.lookalike_feed import LookalikeFeed
from serve.metrics import metrics_middleware
from serve.overload import ADMISSION, Admission, overload_middleware
from serve.sessions import MemoryStore, SessionLocks, SessionStore

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", SessionStore)
STARTED = web.AppKey("started", float)
EVENT_LOG = web.AppKey("event_log", EventLog)  # absent when turned off
FEED = web.AppKey("lookalike_feed", LookalikeFeed)
WORKER = web.AppKey("worker", int)  # this process's number, from 0
BATCHER = web.AppKey("batcher", MicroBatcher)  # absent when off
SESSION_LOCKS = web.AppKey("session_locks", SessionLocks)


def make_app(cfg: Config, engine: Engine | None = None,
             worker: int = 0) -> web.Application:
    """Build the app; without an engine, the bundle loads at startup."""
    # Shedding inside metrics, so a 503 is counted like any answer.
    app = web.Application(middlewares=[metrics_middleware,
                                       overload_middleware,
                                       error_middleware],
                          client_max_size=64 * 1024)
    app[CONFIG] = cfg
    serve = cfg.serve
    app[ADMISSION] = Admission(serve.max_inflight, serve.max_queue,
                               serve.max_queue_ms, serve.retry_after_s)
    app[WORKER] = worker
    app[SESSION_LOCKS] = SessionLocks()
    if engine is not None:
        app[ENGINE] = engine
    app.cleanup_ctx.append(_open_engine)
    app.cleanup_ctx.append(_open_store)
    app.cleanup_ctx.append(_open_event_log)
    app.cleanup_ctx.append(_open_feed)
    handlers.add_routes(app)
    admin_routes.add_routes(app)
    app.on_startup.append(_after_startup)  # after every cleanup_ctx
    return app


async def _after_startup(app: web.Application) -> None:
    if app[CONFIG].serve.freeze_heap:
        freeze_heap("start")


def freeze_heap(after: str) -> None:
    """Hide every object alive now from Python's cyclic collector.

    The bundle, catalogue and histories are half a million objects or
    more that live as long as the process (or the bundle), and a full
    collection walks them all: ~0.2 s on H&M with the loop stopped,
    every request in flight waiting. Frozen, they are skipped; they are
    still freed by reference counting once unused. Called at start and
    after a bundle swap (one such pause then, on purpose).
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.info("heap: %d objects frozen after %s (%.0f ms)",
             gc.get_freeze_count(), after,
             (time.perf_counter() - started) * 1000)


async def _open_engine(app: web.Application):
    if ENGINE not in app:
        cfg = app[CONFIG]
        app[ENGINE] = Engine(load(cfg.serve.bundle), cfg.ranking,
                             cfg.serve)
    # Online catalogue changes before the event log's sessions, which
    # may hold items added online.
    live_catalog.replay(app[ENGINE], app[CONFIG].serve.catalog_log_path)
    app[STARTED] = time.time()
    log.info("serving bundle %s", app[ENGINE].version)
    serve = app[CONFIG].serve
    window = batch_window(serve.batch_window_ms, app[ENGINE])
    if window > 0:
        app[BATCHER] = MicroBatcher(window, serve.max_batch)
        log.info("micro-batching clicks within %.1f ms, up to %d",
                 window, serve.max_batch)
    yield


async def _open_store(app: web.Application):
    cfg = app[CONFIG].serve
    if cfg.store == "redis":
        from serve.redis_store import RedisStore
        store = RedisStore(cfg.redis_url, cfg.session_ttl_s,
                           timeout_s=cfg.redis_timeout_s)
        store.ping()
        app[STORE] = store
        log.info("sessions in Redis at %s", cfg.redis_url)
        yield
        store.close()
        return
    if cfg.store != "memory":
        raise ValueError(f"serve.store: 'memory' or 'redis', found "
                         f"'{cfg.store}'")
    app[STORE] = MemoryStore(cfg.max_sessions, cfg.session_ttl_s,
                             cfg.expire_per_put)
    yield


async def _open_event_log(app: web.Application):
    cfg = app[CONFIG].serve
    if not cfg.event_log_dir:
        log.warning("serve.event_log_dir is empty: events are not "
                    "logged, and a crash loses live sessions")
        yield
        return
    if isinstance(app[STORE], MemoryStore):
        # Redis keeps its own sessions; only memory needs the rebuild.
        started = time.perf_counter()
        since = time.strftime("%Y%m%d", time.gmtime(
            time.time() - cfg.session_ttl_s))
        engine = app[ENGINE]

        def roles(session, event):
            role = (engine.role_of(event.item)
                    if event.item is not None else None)
            session_roles.apply(session, event, role)
        n = rebuild(read_records(cfg.event_log_dir, since), engine.index,
                    app[STORE], cfg.session_ttl_s,
                    cfg.max_events_per_session, roles)
        log.info("rebuilt %d live sessions from %s (%.1fs)", n,
                 cfg.event_log_dir, time.perf_counter() - started)
    event_log = EventLog(cfg.event_log_dir, app[WORKER],
                         cfg.event_log_max_mb << 20)
    await event_log.open()
    app[EVENT_LOG] = event_log
    yield
    await event_log.close()


async def _open_feed(app: web.Application):
    cfg = app[CONFIG].serve
    feed = LookalikeFeed(lambda: app[ENGINE], app[STORE],
                         cfg.lookalike_idle_s)
    app[FEED] = feed
    task = asyncio.create_task(feed.run(), name="lookalike-feed")
    yield
    task.cancel()
    await asyncio.wait([task])  # its cancellation stays inside it
