"""Admin endpoints: swap the served bundle without dropping requests.

POST /v1/admin/bundle {"path": "..."} loads and checks the new bundle
in a thread beside the old one, then replaces the engine in one step on
the event loop. A request reads the engine once, so the requests in
flight finish on the old one; the old one is freed when they are done.
A bundle that fails its checks is refused (409) and the old one keeps
serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import warnings

from aiohttp import web

from rolecall.bundle import BundleError, load
from rolecall.config import Config
from serve import app as app_keys
from serve.engine import Engine
from serve.errors import ApiError
from serve.requests import read_json
from serve.metrics import BUNDLE

log = logging.getLogger(__name__)

TOKEN_ENV = "ROLECALL_ADMIN_TOKEN"
SWAP_LOCK = web.AppKey("swap_lock", asyncio.Lock)


def add_routes(app: web.Application) -> None:
    app[SWAP_LOCK] = asyncio.Lock()  # one swap at a time
    app.router.add_post("/v1/admin/bundle", post_bundle)


def require_admin(request: web.Request) -> None:
    """A bearer token from the env or serve.admin_token; none: refused."""
    token = (os.environ.get(TOKEN_ENV)
             or request.app[app_keys.CONFIG].serve.admin_token)
    if not token:
        raise ApiError(403, "admin_disabled",
                       f"an admin token: set the env {TOKEN_ENV} or "
                       "serve.admin_token=<token>, then send "
                       "Authorization: Bearer <token>", "no token set")
    scheme, _, given = request.headers.get("Authorization",
                                           "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()):
        raise ApiError(401, "unauthorized",
                       "Authorization: Bearer <admin token>",
                       "a token that does not match" if given
                       else "no bearer token")


def token_hint(cfg: Config) -> str:
    """Whether an admin token is set and how to set one; never the
    token itself, since this line goes to logs."""
    if os.environ.get(TOKEN_ENV):
        state = f"set (env {TOKEN_ENV})"
    elif cfg.serve.admin_token:
        state = "set (serve.admin_token)"
    else:
        state = "not set: admin calls answer 403"
    return (f"admin token {state}; to set one, start with the env "
            f"{TOKEN_ENV}=<token> or serve.admin_token=<token>")


async def post_bundle(request: web.Request) -> web.Response:
    require_admin(request)
    raw = await read_json(request)
    path = raw.get("path") if isinstance(raw, dict) else None
    if not isinstance(path, str) or not path:
        raise ApiError(422, "invalid_request",
                       "a JSON object {\"path\": \"<bundle folder>\"}",
                       raw)
    app = request.app
    async with app[SWAP_LOCK]:
        old = app[app_keys.ENGINE]
        try:
            new = await asyncio.to_thread(prepare, app[app_keys.CONFIG],
                                          path, old)
        except BundleError as exc:
            log.warning("bundle swap to %s refused: %s", path, exc)
            raise ApiError(409, "bundle_refused",
                           "a bundle folder whose files match its "
                           "manifest.json, on the served catalogue",
                           str(exc)) from None
        swap_engine(app, new)
    log.info("now serving bundle %s from %s (was %s)", new.version,
             path, old.version)
    return web.json_response({"bundle": new.version, "path": path,
                              "previous": old.version})


def prepare(cfg: Config, path: str, old: Engine) -> Engine:
    """The engine of the bundle at `path`; runs off the event loop."""
    from serve.live_catalog import replay
    bundle = load(path)
    # Live sessions hold catalogue positions, not ids; another item
    # table would silently shift them. Such a bundle needs a restart,
    # which rebuilds sessions by item id from the event log. Items
    # added online come back from the catalogue log, in the same order.
    served = old.bundle.item_ids
    if bundle.item_ids != served[:old.n_bundled]:
        raise BundleError(
            f"{path}: its catalogue ({len(bundle.item_ids)} items) "
            f"differs from the served one ({old.n_bundled}); "
            "restart the server to serve it")
    engine = Engine(bundle, cfg.ranking, cfg.serve)
    replay(engine, cfg.serve.catalog_log_path)
    if engine.bundle.item_ids != served:
        raise BundleError(
            f"{path}: the catalogue log does not bring back the "
            f"{len(served) - old.n_bundled} items added online; "
            "restart the server to serve it")
    return engine


def swap_engine(app: web.Application, engine: Engine) -> None:
    # aiohttp warns on any change to a started app's state, most of it
    # being set-up time; the engine is the one value meant to change
    # while serving. One assignment on the loop thread: a request sees
    # the old engine or the new, never a mix. TODO: move the engine
    # into a holder before aiohttp 4, where the warning becomes an error.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Changing state of started",
                                DeprecationWarning)
        app[app_keys.ENGINE] = engine
    BUNDLE.clear()
    BUNDLE.labels(engine.version).set(1)
    if app[app_keys.CONFIG].serve.freeze_heap:
        app_keys.freeze_heap("a bundle swap")
