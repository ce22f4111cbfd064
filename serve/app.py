"""The aiohttp app factory; the engine and stores live in typed app keys."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from rolecall.bundle import load
from rolecall.config import Config
from rolecall.eventlog import read_records
from serve import admin_routes, handlers, session_roles
from serve.engine import Engine
from serve.errors import error_middleware
from serve.eventlog import EventLog, rebuild
from serve.lookalike_feed import LookalikeFeed
from serve.metrics import metrics_middleware
from serve.sessions import MemoryStore, SessionStore

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", SessionStore)
STARTED = web.AppKey("started", float)
EVENT_LOG = web.AppKey("event_log", EventLog)  # absent when turned off
FEED = web.AppKey("lookalike_feed", LookalikeFeed)
WORKER = web.AppKey("worker", int)  # this process's number, from 0


def make_app(cfg: Config, engine: Engine | None = None,
             worker: int = 0) -> web.Application:
    """Build the app; without an engine, the bundle loads at startup."""
    app = web.Application(middlewares=[metrics_middleware,
                                       error_middleware],
                          client_max_size=64 * 1024)
    app[CONFIG] = cfg
    app[WORKER] = worker
    if engine is not None:
        app[ENGINE] = engine
    app.cleanup_ctx.append(_open_engine)
    app.cleanup_ctx.append(_open_store)
    app.cleanup_ctx.append(_open_event_log)
    app.cleanup_ctx.append(_open_feed)
    handlers.add_routes(app)
    admin_routes.add_routes(app)
    return app


async def _open_engine(app: web.Application):
    if ENGINE not in app:
        cfg = app[CONFIG]
        app[ENGINE] = Engine(load(cfg.serve.bundle), cfg.ranking,
                             cfg.serve)
    app[STARTED] = time.time()
    log.info("serving bundle %s", app[ENGINE].version)
    yield


async def _open_store(app: web.Application):
    cfg = app[CONFIG].serve
    if cfg.store == "redis":
        from serve.redis_store import RedisStore
        store = RedisStore(cfg.redis_url, cfg.session_ttl_s)
        store.ping()
        app[STORE] = store
        log.info("sessions in Redis at %s", cfg.redis_url)
        yield
        store.close()
        return
    if cfg.store != "memory":
        raise ValueError(f"serve.store: 'memory' or 'redis', found "
                         f"'{cfg.store}'")
    app[STORE] = MemoryStore(cfg.max_sessions)
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
