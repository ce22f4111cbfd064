"""The aiohttp app factory; the engine and stores live in typed app keys."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from rolecall.bundle import load
from rolecall.config import Config
from serve import handlers
from serve.engine import Engine
from serve.errors import error_middleware
from serve.metrics import metrics_middleware
from serve.sessions import MemoryStore, SessionStore

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", SessionStore)
STARTED = web.AppKey("started", float)


def make_app(cfg: Config, engine: Engine | None = None) -> web.Application:
    """Build the app; without an engine, the bundle loads at startup."""
    app = web.Application(middlewares=[metrics_middleware,
                                       error_middleware],
                          client_max_size=64 * 1024)
    app[CONFIG] = cfg
    if engine is not None:
        app[ENGINE] = engine
    app.cleanup_ctx.append(_open_engine)
    app.cleanup_ctx.append(_open_store)
    handlers.add_routes(app)
    return app


async def _open_engine(app: web.Application):
    if ENGINE not in app:
        cfg = app[CONFIG]
        app[ENGINE] = Engine(load(cfg.serve.bundle), cfg.ranking)
    app[STARTED] = time.time()
    log.info("serving bundle %s", app[ENGINE].version)
    yield


async def _open_store(app: web.Application):
    app[STORE] = MemoryStore(app[CONFIG].serve.max_sessions)
    yield
