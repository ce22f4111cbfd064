"""HTTP handlers of the online contract (DESIGN.md, "Online contract")."""

from __future__ import annotations

import time
import uuid

import orjson
from aiohttp import web
from pydantic import ValidationError

from serve import app as app_keys
from serve import (batcher, catalog_routes, demo, eventlog,
                   identity_routes, live_catalog, openapi,
                   session_roles)
from serve.engine import Engine
from serve.errors import ApiError, from_validation
from serve.metrics import (BUNDLE, SESSIONS, exposition, observe_stages)
from serve.requests import (answer_body, parse_k, parse_where,
                            read_json, valid_id, where_of)
from serve.schemas import EventIn
from serve.sessions import Event, Session

ITEM_EVENTS = {"view", "click", "cart", "purchase"}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_event)
    app.router.add_get("/v1/recommendations", get_recommendations)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/ping", ping)  # the bench's floor
    app.router.add_get("/metrics", metrics)
    catalog_routes.add_routes(app)
    live_catalog.add_routes(app)
    openapi.add_routes(app)
    demo.add_routes(app)
    identity_routes.add_routes(app)


def _event(engine: Engine, body: EventIn) -> Event:
    item = None
    if body.event_type in ITEM_EVENTS:
        if body.item_id is None:
            raise ApiError(422, "missing_item",
                           f"item_id: required for a '{body.event_type}' "
                           "event", None)
        item = engine.index.get(body.item_id)
        if item is None:
            raise ApiError(422, "unknown_item",
                           "item_id: an item of the catalogue",
                           body.item_id)
    elif body.event_type == "filter" and not body.filters:
        raise ApiError(422, "missing_filters",
                       "filters: an object such as {\"size\": \"M\"} for "
                       "a 'filter' event", None)
    return Event(event_id=body.event_id or uuid.uuid4().hex,
                 ts=body.ts or time.time(), event_type=body.event_type,
                 item=item, filters=body.filters, user_id=body.user_id)


async def post_event(request: web.Request) -> web.Response:
    """Log the event, apply it to its session, answer.

    The event log's write starts first and runs while the answer is
    computed on a draft of the session; the draft is stored only once
    the event is on disk, so nothing anyone reads or is answered 200
    could be lost by a crash, and a failed write (a 503) leaves the
    session as it was. Clicks, identify, logout and forget of one
    session hold its lock, so nothing else in this process writes it
    meanwhile. Events that change who the session belongs to (a new
    user_id, a logout) wait for the log first, so the identity graph
    changes only for an event on disk.
    """
    t0 = time.perf_counter()
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_request", "a JSON object",
                       type(raw).__name__)
    try:
        body = EventIn.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
    k = parse_k(request, body.k)
    app = request.app
    engine = app[app_keys.ENGINE]
    event = _event(engine, body)  # validates before anything is stored
    event_log = app.get(app_keys.EVENT_LOG)
    logged = None
    if event_log is not None:  # on disk before it counts as accepted
        logged = event_log.submit(eventlog.record(
            body.session_id, body.user_id, body.device_id, event,
            body.item_id if event.item is not None else None,
            engine.bundle.config["data"]["name"]))
    t1 = time.perf_counter()
    store = app[app_keys.STORE]
    waited = 0.0
    try:
        async with app[app_keys.SESSION_LOCKS].hold(body.session_id):
            base = store.get(body.session_id)
            if logged is not None and _changes_identity(base, body):
                await logged
                logged, waited = None, time.perf_counter() - t1
            session, change = _applied(app, engine, base, body, event)
            if logged is None:
                store.put(session)
            t2 = time.perf_counter()
            try:
                answer = await batcher.recommend(
                    app.get(app_keys.BATCHER), engine, session, k,
                    identity_routes.history_for(app, session),
                    where_of(body.where))
            finally:  # also when answering failed: an event on disk
                t3 = time.perf_counter()  # belongs in its session
                if logged is not None:
                    pending, logged = logged, None
                    await pending  # EventLogError: a 503, nothing stored
                    # Stored whole even if evicted or expired meanwhile.
                    store.put(session)
            t4 = time.perf_counter()
    finally:
        if logged is not None:  # failed before its write was awaited
            logged.add_done_callback(_outcome_seen)
    SESSIONS.set(len(store))
    app[app_keys.FEED].note(session)
    # event_log: what the answer still waited for the fsync after its
    # own work (the write overlaps it).
    timing = {"parse": round((t1 - t0) * 1000, 3),
              "event_log": round((waited + t4 - t3) * 1000, 3),
              "session_update": round((t2 - t1 - waited) * 1000, 3),
              **answer.timing_ms}
    t5 = time.perf_counter()
    body_out = answer_body(engine, session, answer, timing)
    body_out.update(event_id=event.event_id, accepted=True,
                    switched=change.switched,
                    previous_role=change.previous if change.switched
                    else None)
    return _timed_json(body_out, timing, t5)


def _applied(app: web.Application, engine: Engine, base: Session | None,
             body: EventIn, event: Event
             ) -> tuple[Session, session_roles.RoleChange]:
    """A draft of the session with the event applied; `base` stays as
    it is."""
    session = base.draft() if base is not None else Session(
        body.session_id)
    identity_routes.link_from_event(app, session, body.user_id,
                                    body.device_id, body.event_type)
    change = session_roles.record(
        session, event,
        engine.role_of(event.item) if event.item is not None else None,
        app[app_keys.CONFIG].serve.max_events_per_session, time.time())
    return session, change


def _changes_identity(session: Session | None, body: EventIn) -> bool:
    user = session.user_id if session is not None else None
    return body.event_type == "logout" or bool(
        body.user_id and body.user_id != user)


def _outcome_seen(done) -> None:
    """The request failed first; its write's outcome is not news."""
    if not done.cancelled():
        done.exception()


def _timed_json(body: dict, timing: dict[str, float],
                started: float) -> web.Response:
    """The JSON answer, the time since `started` in timing["serialize"].

    The timing block is appended after the rest is encoded, so the stage
    covers building and encoding all of the answer but those few bytes.
    """
    head = orjson.dumps({k: v for k, v in body.items()
                         if k != "timing_ms"})
    timing["serialize"] = round((time.perf_counter() - started) * 1000,
                                3)
    observe_stages(timing)
    text = head[:-1] + b', "timing_ms": ' + orjson.dumps(timing) + b"}"
    return web.Response(body=text, content_type="application/json")


async def get_recommendations(request: web.Request) -> web.Response:
    session_id = request.query.get("session_id")
    if not valid_id(session_id):
        raise ApiError(422, "invalid_session_id",
                       "session_id: a query parameter of 1 to 128 "
                       "letters, digits or _.:@-", session_id)
    k = parse_k(request, request.query.get("k"))
    where = parse_where(request)
    engine = request.app[app_keys.ENGINE]
    session = (request.app[app_keys.STORE].get(session_id)
               or Session(session_id))
    answer = await batcher.recommend(
        request.app.get(app_keys.BATCHER), engine, session, k,
        identity_routes.history_for(request.app, session), where)
    return web.Response(body=orjson.dumps(answer_body(
        engine, session, answer, answer.timing_ms)),
        content_type="application/json")


async def ping(request: web.Request) -> web.Response:
    """Does no work: its latency is the server's and network's floor."""
    return web.json_response({"ok": True})


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[app_keys.ENGINE]
    BUNDLE.labels(engine.version).set(1)
    return web.json_response({
        "status": "ok", "bundle": engine.version,
        "items": len(engine.bundle.item_ids),
        "lookalikes": len(engine.bundle.bank),
        "sessions": len(request.app[app_keys.STORE]),
        "uptime_s": round(time.time() - request.app[app_keys.STARTED], 1)})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=exposition(),
                        content_type="text/plain", charset="utf-8")
