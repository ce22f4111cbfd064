"""Bounded memory, overload shedding and a lost Redis, through the real
app, a real redis-server and the real session store."""

import asyncio
import re

from aiohttp import web

from redis_server import start_redis, stop_redis
from serve.admin_routes import TOKEN_ENV, token_hint
from serve.app import STORE, make_app
from serve.overload import ADMISSION
from serve.sessions import MemoryStore, Session
from servers import free_port


def _women(engine):
    return next(engine.bundle.item_ids[i] for i in engine.popular
                if engine.genders[i] == "women")


# ---- memory: the session cap and idle expiry ----


def test_memory_store_evicts_least_recent_beyond_the_cap():
    store = MemoryStore(max_sessions=5)
    for i in range(8):
        store.put(Session(f"s{i}"))
    store.put(Session("s3"))  # seen again: now the most recent
    store.put(Session("s8"))
    assert len(store) == 5
    assert {sid for sid, _ in store.items()} == {"s3", "s5", "s6", "s7",
                                                 "s8"}


def test_memory_store_expires_idle_sessions_on_read_and_write():
    now = [1_000.0]
    store = MemoryStore(max_sessions=100, ttl_s=60, expire_per_put=2,
                        clock=lambda: now[0])
    for i in range(5):
        store.put(Session(f"old{i}", last_seen=now[0]))
    now[0] += 30
    store.put(Session("mid", last_seen=now[0]))
    now[0] += 31  # old* idle 61 s, mid 31 s
    assert store.get("old4") is None  # gone at once for a reader
    assert store.get("mid") is not None
    assert [sid for sid, _ in store.items()] == ["mid"]
    store.put(Session("new", last_seen=now[0]))
    assert len(store) == 4  # old0, old1 removed by this write
    store.put(Session("new2", last_seen=now[0]))
    assert len(store) == 3  # then old2 and old3; mid is fresh
    assert store.expired == 5


def test_memory_store_count_stays_bounded_under_a_stream():
    """A session a simulated second, each idle after one event: the
    store holds about a ttl's worth, however long the stream runs."""
    now = [0.0]
    store = MemoryStore(max_sessions=10_000, ttl_s=60,
                        clock=lambda: now[0])
    held = []
    for i in range(3_000):
        now[0] = float(i)
        store.put(Session(f"s{i}", last_seen=now[0]))
        held.append(len(store))
    assert max(held) == 61  # the last 60 s and this one, never more
    assert store.expired == 3_000 - 61
    capped = MemoryStore(max_sessions=50, ttl_s=60, clock=lambda: now[0])
    for i in range(3_000):
        now[0] = float(i)
        capped.put(Session(f"s{i}", last_seen=now[0]))
        assert len(capped) <= 50  # the cap bites before the ttl


async def test_app_store_takes_ttl_and_cap_from_config(aiohttp_client,
                                                        engine, tiny_cfg):
    tiny_cfg.serve.session_ttl_s = 123.0
    tiny_cfg.serve.max_sessions = 77
    client = await aiohttp_client(make_app(tiny_cfg, engine))
    store = client.app[STORE]
    assert (store.ttl_s, store.max_sessions) == (123.0, 77)


# ---- overload: 503 with Retry-After past capacity, then recovery ----


def _held_app(tiny_cfg, engine, **limits):
    """The real app with one more route that holds its place in the
    admission line until the test lets go."""
    for key, value in limits.items():
        setattr(tiny_cfg.serve, key, value)
    app = make_app(tiny_cfg, engine)
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(request):
        entered.set()
        await release.wait()
        return web.json_response({"held": True})
    app.router.add_get("/test/hold", hold)
    return app, entered, release


async def _shed_count(client, endpoint, reason) -> float:
    text = await (await client.get("/metrics")).text()
    m = re.search(r'^rolecall_shed_total\{endpoint="' + re.escape(endpoint)
                  + r'",reason="' + reason + r'"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_past_capacity_answers_503_with_retry_after_then_recovers(
        aiohttp_client, engine, tiny_cfg):
    app, entered, release = _held_app(tiny_cfg, engine, max_inflight=1,
                                      max_queue=0, retry_after_s=2)
    client = await aiohttp_client(app)
    item = _women(engine)
    before = await _shed_count(client, "/v1/events", "queue_full")
    held = asyncio.create_task(client.get("/test/hold"))
    await asyncio.wait_for(entered.wait(), 30)
    r = await client.post("/v1/events", json={"session_id": "o1",
                                              "item_id": item})
    assert r.status == 503 and r.headers["Retry-After"] == "2"
    body = await r.json()
    assert body["error"] == "overloaded" and body["expected"]
    assert client.app[STORE].get("o1") is None  # nothing was half done
    for path in ("/healthz", "/v1/ping", "/metrics"):
        assert (await client.get(path)).status == 200  # never shed
    assert await _shed_count(client, "/v1/events",
                             "queue_full") == before + 1
    release.set()
    assert (await held).status == 200
    r = await client.post("/v1/events", json={"session_id": "o1",
                                              "item_id": item})
    assert r.status == 200 and (await r.json())["events"] == 1


async def test_a_request_that_waited_too_long_is_shed_at_its_turn(
        aiohttp_client, engine, tiny_cfg):
    # A budget of a microsecond: any wait in line is longer.
    app, entered, release = _held_app(tiny_cfg, engine, max_inflight=1,
                                      max_queue=4, max_queue_ms=0.001)
    client = await aiohttp_client(app)
    item = _women(engine)
    held = asyncio.create_task(client.get("/test/hold"))
    await asyncio.wait_for(entered.wait(), 30)
    waiting = asyncio.create_task(client.post(
        "/v1/events", json={"session_id": "o2", "item_id": item}))
    admission = client.app[ADMISSION]
    for _ in range(3000):  # until it stands in line
        if admission.waiting:
            break
        await asyncio.sleep(0.01)
    assert admission.waiting == 1
    release.set()
    assert (await held).status == 200
    r = await waiting
    assert r.status == 503 and "Retry-After" in r.headers
    assert "waited_too_long" in (await r.json())["found"]
    assert await _shed_count(client, "/v1/events",
                             "waited_too_long") >= 1
    r = await client.post("/v1/events", json={"session_id": "o2",
                                              "item_id": item})
    assert r.status == 200  # nobody waits now: served


async def test_a_burst_gets_answers_or_quick_503s_never_other_errors(
        aiohttp_client, engine, tiny_cfg):
    app, _, _ = _held_app(tiny_cfg, engine, max_inflight=1, max_queue=0)
    client = await aiohttp_client(app)
    item = _women(engine)
    before = await _shed_count(client, "/v1/events", "queue_full")
    burst = await asyncio.gather(*(client.post("/v1/events", json={
        "session_id": f"b{i}", "item_id": item}) for i in range(24)))
    statuses = [r.status for r in burst]
    assert set(statuses) <= {200, 503} and 200 in statuses
    assert all(r.headers.get("Retry-After") for r in burst
               if r.status == 503)
    shed = await _shed_count(client, "/v1/events", "queue_full")
    assert shed - before == statuses.count(503)
    r = await client.post("/v1/events", json={"session_id": "after",
                                              "item_id": item})
    assert r.status == 200


# ---- a lost Redis: 503 while it is away, served again once back ----


async def test_lost_redis_answers_503_and_recovers_on_return(
        aiohttp_client, engine, tiny_cfg, tmp_path):
    port = free_port()
    redis_proc = start_redis(tmp_path, port)
    try:
        tiny_cfg.serve.store = "redis"
        tiny_cfg.serve.redis_url = f"redis://127.0.0.1:{port}/0"
        client = await aiohttp_client(make_app(tiny_cfg, engine))
        click = {"session_id": "r1", "item_id": _women(engine)}
        r = await client.post("/v1/events", json=click)
        assert r.status == 200 and (await r.json())["events"] == 1
        stop_redis(redis_proc)
        for call in (client.post("/v1/events", json=click),
                     client.get("/v1/recommendations",
                                params={"session_id": "r1"}),
                     client.post("/v1/sessions/r1/identify",
                                 json={"user_id": "u1"})):
            r = await call
            assert r.status == 503 and r.headers["Retry-After"]
            body = await r.json()
            assert body["error"] == "store_unavailable"
            assert "session store unavailable" in body["found"]
        assert (await client.get("/v1/ping")).status == 200
        redis_proc = start_redis(tmp_path, port)  # same port, empty
        r = await client.post("/v1/events", json=click)
        assert r.status == 200 and (await r.json())["events"] == 1
        r = await client.post("/v1/events", json=click)
        assert r.status == 200 and (await r.json())["events"] == 2
    finally:
        stop_redis(redis_proc)


# ---- the admin token line the main job prints ----


def test_token_hint_says_whether_set_never_the_token(monkeypatch,
                                                     tiny_cfg):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert "not set" in token_hint(tiny_cfg)
    assert TOKEN_ENV in token_hint(tiny_cfg)
    assert "serve.admin_token" in token_hint(tiny_cfg)
    tiny_cfg.serve.admin_token = "cfg-secret-42"
    assert "set (serve.admin_token)" in token_hint(tiny_cfg)
    monkeypatch.setenv(TOKEN_ENV, "env-secret-42")
    line = token_hint(tiny_cfg)
    assert f"set (env {TOKEN_ENV})" in line
    assert "secret" not in line
