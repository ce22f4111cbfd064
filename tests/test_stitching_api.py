"""Live stitching through the HTTP API (issue 4): identify, cross-device,
logout and forget, with real H&M customers."""

import shutil

import duckdb
import pytest

from rolecall.bundle import load
from tests.conftest import EXACT
from rolecall.config import RankingConfig
from serve.app import CONFIG, STORE, make_app
from serve.engine import Engine
from serve.identity_routes import GRAPH, HISTORY, history_for

TOKEN = "test-admin-token"


@pytest.fixture
def db_copy(db_path, tmp_path):
    path = tmp_path / "db.duckdb"
    shutil.copy(db_path, path)
    return path


@pytest.fixture
async def client(aiohttp_client, tiny_bundle, tiny_cfg, db_copy):
    tiny_cfg.data.duckdb_path = str(db_copy)
    tiny_cfg.serve.admin_token = TOKEN
    engine = Engine(load(tiny_bundle), RankingConfig(), EXACT)
    return await aiohttp_client(make_app(tiny_cfg, engine))


def _customer(db, engine, department_min=4):
    """A customer whose past purchases crowd into one department."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("""
        SELECT e.user_id, i.department, count(*) AS n
        FROM events e JOIN items i USING (dataset, item_id)
        WHERE e.dataset = 'hm' AND i.gender = 'women'
        GROUP BY ALL HAVING n >= ? ORDER BY n DESC, e.user_id LIMIT 50
        """, [department_min]).fetchall()
    con.close()
    return rows[0][0], rows[0][1]


def _women_item(engine, not_department):
    for i in engine.prior_order:
        if (engine.genders[i] == "women"
                and engine.bundle.items["department"][i] != not_department):
            return engine.bundle.item_ids[i]


async def test_login_answer_uses_history_and_keeps_events(client, db_copy):
    app = client.server.app
    from serve.app import ENGINE
    engine = app[ENGINE]
    user, dept = _customer(db_copy, engine)
    item = _women_item(engine, dept)
    r = await client.post("/v1/events", json={
        "session_id": "anon-1", "item_id": item, "device_id": "phone-1"})
    anon = await r.json()
    r = await client.post("/v1/sessions/anon-1/identify",
                          json={"user_id": user, "device_id": "phone-1"})
    assert r.status == 200
    body = await r.json()
    assert body["linked"] and body["history_events"] > 0
    assert body["user_id"] == user

    def share(recs):
        return sum(x["department"] == dept for x in recs) / len(recs)
    assert share(body["recommendations"]) > share(anon["recommendations"])
    # The anonymous click is the customer's now, counted once.
    session = app[STORE].get("anon-1")
    assert session.user_id == user
    assert [e.event_type for e in session.events] == ["click", "login"]

    again = await (await client.post(
        "/v1/sessions/anon-1/identify", json={"user_id": user})).json()
    assert not again["linked"]
    assert len(app[STORE].get("anon-1").events) == 2


async def test_two_devices_see_each_other_once_linked(client, db_copy):
    app = client.server.app
    from serve.app import ENGINE
    engine = app[ENGINE]
    user, dept = _customer(db_copy, engine)
    a, b = (_women_item(engine, dept), engine.bundle.item_ids[
        engine.prior_order[5]])
    await client.post("/v1/events", json={"session_id": "laptop",
                                          "item_id": a})
    await client.post("/v1/events", json={"session_id": "phone",
                                          "item_id": b})
    for sid in ("laptop", "phone"):
        r = await client.post(f"/v1/sessions/{sid}/identify",
                              json={"user_id": user})
        assert r.status == 200
    phone = app[STORE].get("phone")
    assert engine.index[a] in history_for(app, phone)
    r = await client.post("/v1/sessions/phone/logout")
    assert (await r.json())["logged_out"] == user
    assert history_for(app, app[STORE].get("phone")) == []


async def test_forget_customer_leaves_no_trace(client, db_copy):
    app = client.server.app
    from serve.app import ENGINE
    engine = app[ENGINE]
    user, dept = _customer(db_copy, engine)
    await client.post("/v1/events", json={
        "session_id": "f1", "item_id": _women_item(engine, dept)})
    await client.post("/v1/sessions/f1/identify", json={"user_id": user})
    r = await client.delete(f"/v1/customers/{user}")
    assert r.status in (401, 403)  # admin only
    r = await client.delete(f"/v1/customers/{user}",
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200
    removed = (await r.json())["removed"]
    assert removed["history_items"] > 0 and removed["live_sessions"] == 1
    assert removed["duckdb_events"] > 0
    assert removed["event_log_records"] >= 2  # the click and the login
    assert app[STORE].get("f1") is None
    assert app[HISTORY].items(user) == []
    assert user not in app[GRAPH].user_sessions
    assert not [s for s in engine.bundle.bank.session_ids
                if s.startswith(f"hm-{user[:16]}")]
    con = duckdb.connect(str(db_copy), read_only=True)
    for table in ("events", "customers", "identities"):
        n = con.execute(f"SELECT count(*) FROM {table} WHERE user_id = ?",
                        [user]).fetchone()[0]
        assert n == 0, table
    con.close()
    body = await (await client.post("/v1/sessions/f2/identify",
                                    json={"user_id": user})).json()
    assert body["history_events"] == 0
    # A reload of the same bundle (restart, swap) keeps them forgotten.
    cfg = app[CONFIG]
    reloaded = Engine(load(engine.bundle.root), cfg.ranking, cfg.serve)
    assert not [s for s in reloaded.bundle.bank.session_ids
                if s.startswith(f"hm-{user[:16]}")]


async def test_identify_rejects_bad_input(client):
    r = await client.post("/v1/sessions/x/identify", json={"user": "a"})
    assert r.status == 422
    body = await r.json()
    assert body["error"] == "invalid_request" and body["expected"]
    r = await client.post("/v1/sessions/nobody/logout")
    assert r.status == 404


async def test_login_attributes_earlier_anonymous_events_in_duckdb(
        client, db_copy, tmp_path):
    from serve.app import ENGINE
    from train.ingest import connect, ingest_online
    app = client.server.app
    engine = app[ENGINE]
    user, dept = _customer(db_copy, engine)
    item = _women_item(engine, dept)
    await client.post("/v1/events", json={"session_id": "anon-db",
                                          "item_id": item})
    r = await client.post("/v1/sessions/anon-db/identify",
                          json={"user_id": user})
    assert r.status == 200
    log_dir = app[CONFIG].serve.event_log_dir
    await client.close()  # the log is complete on disk
    con = connect(db_copy)
    try:
        assert ingest_online(con, log_dir) >= 2
        rows = con.execute(
            "SELECT event_type, user_id FROM events WHERE session_id = ? "
            "ORDER BY seq", ["anon-db"]).fetchall()
        links = con.execute("SELECT user_id, via FROM identities WHERE "
                            "session_id = ?", ["anon-db"]).fetchall()
    finally:
        con.close()
    assert rows == [("click", user), ("login", user)]
    assert links == [(user, "login")]


async def test_event_user_ids_and_logout_events_move_the_link(client):
    app = client.server.app
    from serve.app import ENGINE
    item = app[ENGINE].bundle.item_ids[app[ENGINE].prior_order[0]]
    await client.post("/v1/sessions/lg-1/identify",
                      json={"user_id": "alice"})
    body = await (await client.post("/v1/events", json={
        "session_id": "lg-1", "item_id": item, "user_id": "bob"})).json()
    assert body["user_id"] == "bob"
    assert app[GRAPH].session_user["lg-1"] == "bob"
    await client.post("/v1/events", json={"session_id": "lg-1",
                                          "event_type": "logout"})
    assert "lg-1" not in app[GRAPH].session_user
    assert app[STORE].get("lg-1").user_id is None


async def test_identify_before_any_click_answers_from_history(client,
                                                               db_copy):
    from serve.app import ENGINE
    app = client.server.app
    user, _ = _customer(db_copy, app[ENGINE])
    r = await client.post("/v1/sessions/fresh/identify",
                          json={"user_id": user, "k": 12})
    assert r.status == 200
    body = await r.json()
    assert body["history_events"] > 0
    recs = body["recommendations"]
    assert len(recs) == 12
    assert any(x["parts"]["history"] > 0 for x in recs)
