"""Identify, logout and forget: the stitching endpoints (issue 4)."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serve import admin_routes
from serve import app as app_keys
from serve import eventlog
from serve.errors import ApiError, from_validation
from serve.requests import answer_body, parse_k, read_json, valid_id
from serve.identity import (CustomerHistory, IdentityGraph,
                            forget_in_duckdb, remember_forgotten)
from serve.sessions import Event, Session

log = logging.getLogger(__name__)

GRAPH = web.AppKey("identity_graph", IdentityGraph)
HISTORY = web.AppKey("customer_history", CustomerHistory)

UserId = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")


class IdentifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = UserId
    device_id: str | None = Field(default=None, min_length=1,
                                  max_length=128)
    via: str = Field(default="login", pattern="^(login|recognized)$")
    k: int | None = Field(default=None, ge=1)


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_open)
    app.router.add_post("/v1/sessions/{session_id}/identify", identify)
    app.router.add_post("/v1/sessions/{session_id}/logout", logout)
    app.router.add_delete("/v1/customers/{user_id}", forget)


async def _open(app: web.Application):
    cfg = app[app_keys.CONFIG]
    engine = app[app_keys.ENGINE]
    app[GRAPH] = IdentityGraph()
    app[HISTORY] = CustomerHistory.load(
        cfg.data.duckdb_path, engine.bundle.config["data"]["name"])
    yield


def history_for(app: web.Application, session: Session) -> list[int]:
    """The linked customer's past items, then their other live sessions'
    events, oldest first, as catalogue indices."""
    user = session.user_id
    if not user or HISTORY not in app:
        return []
    engine = app[app_keys.ENGINE]
    items = [engine.index[i] for i in app[HISTORY].items(user)
             if i in engine.index]
    store = app[app_keys.STORE]
    siblings = []
    for sid in app[GRAPH].user_sessions.get(user, ()):
        other = store.get(sid) if sid != session.session_id else None
        if other is not None:
            siblings += [(e.ts, e.item) for e in other.item_events()]
    return items + [item for _, item in sorted(siblings)]


def _session_id(request: web.Request) -> str:
    sid = request.match_info["session_id"]
    if not valid_id(sid):
        raise ApiError(422, "invalid_session_id",
                       "a session id of 1 to 128 letters, digits or "
                       "_.:@-", sid)
    return sid


def link_from_event(app: web.Application, session: Session,
                    user_id: str | None, device_id: str | None,
                    event_type: str) -> None:
    """Events carry identity too: a user_id links like identify does,
    and a logout event unlinks like the logout call, so the session's
    user and the identity graph never disagree."""
    if event_type == "logout":
        app[GRAPH].unlink(session.session_id)
        session.user_id = None
    elif user_id and user_id != session.user_id:
        app[GRAPH].link(session.session_id, user_id, device_id, "event")
        session.user_id = user_id
    if device_id:
        session.device_id = device_id


async def identify(request: web.Request) -> web.Response:
    sid = _session_id(request)
    raw = await read_json(request)
    try:
        body = IdentifyIn.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
    k = parse_k(request, body.k)
    app = request.app
    engine, store = app[app_keys.ENGINE], app[app_keys.STORE]
    # The session's lock: a click of it in flight commits first.
    async with app[app_keys.SESSION_LOCKS].hold(sid):
        session = store.get(sid) or Session(sid)
        linked = app[GRAPH].link(sid, body.user_id, body.device_id,
                                 body.via)
        session.user_id = body.user_id
        session.device_id = body.device_id or session.device_id
        if linked:
            _add_known_roles(app, session)
            n = len(session.events)
            login = Event(f"{sid}:{body.via}:{n}", time.time(), "login",
                          user_id=body.user_id)
            event_log = app.get(app_keys.EVENT_LOG)
            if event_log is not None:  # the link is durable first
                await event_log.append(eventlog.record(
                    sid, body.user_id, session.device_id, login, None,
                    engine.bundle.config["data"]["name"]))
            session.events.append(login)
        store.put(session)
    history = history_for(app, session)
    answer = engine.recommend(session, k, history=history)
    out = answer_body(engine, session, answer, answer.timing_ms)
    used = max(engine.ranking.history_events,
               engine.ranking.history_recent
               if engine.ranking.history_weight > 0 else 0)
    out.update(linked=linked, history_events=min(len(history), used))
    return web.json_response(out)


def _add_known_roles(app: web.Application, session: Session) -> None:
    """The customer's roles from history join the session's contexts,
    without changing who the shopper is buying for right now."""
    engine = app[app_keys.ENGINE]
    for item in app[HISTORY].items(session.user_id):
        i = engine.index.get(item)
        role = engine.role_of(i) if i is not None else None
        if role is not None and role.known:
            session.roles.setdefault(role.key, {
                "gender": role.gender, "age_group": role.age_group,
                "size": None})


async def logout(request: web.Request) -> web.Response:
    sid = _session_id(request)
    app = request.app
    store, engine = app[app_keys.STORE], app[app_keys.ENGINE]
    async with app[app_keys.SESSION_LOCKS].hold(sid):
        session = store.get(sid)
        if session is None:
            raise ApiError(404, "unknown_session",
                           "a session that has posted events", sid)
        user = app[GRAPH].unlink(sid)
        session.user_id = None
        store.put(session)
    answer = engine.recommend(session, app[app_keys.CONFIG].serve.default_k)
    out = answer_body(engine, session, answer, answer.timing_ms)
    out.update(logged_out=user)
    return web.json_response(out)


async def forget(request: web.Request) -> web.Response:
    """Remove a customer everywhere the engine keeps them."""
    user = request.match_info["user_id"]
    app = request.app
    admin_routes.require_admin(request)
    removed = app[GRAPH].forget(user)
    n_items, past_sessions = app[HISTORY].forget(user)
    removed["history_items"] = n_items
    store = app[app_keys.STORE]
    live = [sid for sid, s in _sessions_of(store, user)]
    for sid in live:  # after any click of it in flight
        async with app[app_keys.SESSION_LOCKS].hold(sid):
            store.delete(sid)
    removed["live_sessions"] = len(live)
    bank = app[app_keys.ENGINE].bundle.bank
    removed["lookalike_states"] = bank.forget(set(past_sessions) | set(live))
    cfg = app[app_keys.CONFIG]
    remember_forgotten(cfg.serve.forgotten_path, past_sessions + live)
    removed.update(forget_in_duckdb(cfg.data.duckdb_path, user,
                                    past_sessions + live))
    event_log = app.get(app_keys.EVENT_LOG)
    if event_log is not None and hasattr(event_log, "forget"):
        removed["event_log_records"] = await event_log.forget(
            user, set(live))
    log.info("forgot customer %s: %s", user[:8], removed)
    return web.json_response({"user_id": user, "removed": removed})


def _sessions_of(store, user: str):
    return [(sid, s) for sid, s in list(store.items())
            if s.user_id == user]


