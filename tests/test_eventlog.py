"""The durable event log: group commit, torn lines, crash and replay,
and the online events reaching training through ingest."""

import asyncio
import os
import shutil
import signal
from datetime import datetime, timezone

import aiohttp

from rolecall.eventlog import log_files, read_records
from serve.eventlog import EventLog, EventLogError
from servers import get, start_server, stop


async def test_group_commit_writes_every_record_in_few_fsyncs(tmp_path):
    log = EventLog(tmp_path)
    await log.open()
    await asyncio.gather(*(log.append({"v": 1, "n": i})
                           for i in range(200)))
    await log.close()
    assert [r["n"] for r in read_records(tmp_path)] == list(range(200))
    # Appends that arrive while a batch is on disk share the next fsync.
    assert log.batches < 200


async def test_torn_last_line_is_skipped_then_cut_on_reopen(tmp_path,
                                                            caplog):
    log = EventLog(tmp_path)
    await log.open()
    for i in range(3):
        await log.append({"v": 1, "n": i})
    await log.close()
    path = log_files(tmp_path)[-1]
    with path.open("ab") as f:
        f.write(b'{"v": 1, "n": 3, "tor')  # a crash mid-batch
    assert [r["n"] for r in read_records(tmp_path)] == [0, 1, 2]
    assert "torn by a crash" in caplog.text
    log = EventLog(tmp_path)
    await log.open()
    await log.append({"v": 1, "n": 4})
    await log.close()
    assert [r["n"] for r in read_records(tmp_path)] == [0, 1, 2, 4]


def _items(bundle, n):
    import json
    items = json.loads((bundle / "items.json").read_text())
    women = [i for i, g in zip(items["item_id"], items["gender"])
             if g == "women"]
    return women[:n]


async def _load(base, items, acked, stop_at):
    """Four sessions, eight clients at once, until stop_at are acked."""
    async with aiohttp.ClientSession() as http:
        async def client(c):
            for j in range(1000):
                if len(acked) >= stop_at:
                    return
                eid = f"c{c}-{j}"
                body = {"session_id": f"crash-{c % 4}", "event_id": eid,
                        "item_id": items[j % len(items)]}
                async with http.post(f"{base}/v1/events",
                                     json=body) as r:
                    if r.status == 200:
                        acked.append(eid)
        await asyncio.gather(*(client(c) for c in range(8)),
                             return_exceptions=True)


async def test_sigkill_loses_no_acknowledged_event(tiny_bundle, tmp_path):
    events = tmp_path / "events"
    opts = (f"serve.event_log_dir={events}",)
    proc, base = start_server(tiny_bundle, tmp_path, "a", *opts)
    acked: list[str] = []
    try:
        load = asyncio.create_task(
            _load(base, _items(tiny_bundle, 5), acked, 10**9))
        while len(acked) < 60:
            await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # requests still in flight
        proc.wait()
        await load
    finally:
        stop(proc)
    logged = [r for r in read_records(events)]
    assert set(acked) <= {r["event"]["event_id"] for r in logged}
    proc, base = start_server(tiny_bundle, tmp_path, "b", *opts)
    try:
        for s in range(4):
            sid = f"crash-{s}"
            body = get(f"{base}/v1/recommendations?session_id={sid}")
            n_logged = sum(r["session_id"] == sid for r in logged)
            n_acked = sum(e.startswith(f"c{c}-") for e in acked
                          for c in range(s, 8, 4))
            assert body["events"] == n_logged >= n_acked > 0
    finally:
        stop(proc)


async def test_online_events_reach_training_through_ingest(
        aiohttp_client, tiny_bundle, tiny_cfg, db_path, tmp_path):
    from rolecall.bundle import load
    from serve.app import make_app
    from serve.engine import Engine
    from train.ingest import connect, ingest_online
    from train.sessions import load_sessions
    tiny_cfg.serve.item_index = "flat"  # building HNSW: slower than this
    engine = Engine(load(tiny_bundle), tiny_cfg.ranking, tiny_cfg.serve)
    client = await aiohttp_client(make_app(tiny_cfg, engine))
    # A visit inside the training days of the bundled week.
    ts = datetime(2020, 9, 18, 12, tzinfo=timezone.utc).timestamp()
    items = _items(tiny_bundle, 3)
    for j, item in enumerate(items):
        r = await client.post("/v1/events", json={
            "session_id": "online-visit", "item_id": item,
            "event_type": "purchase" if j == 2 else "click",
            "ts": ts + j})
        assert r.status == 200
    await client.close()  # the log is closed and complete
    db = tmp_path / "copy.duckdb"
    shutil.copy(db_path, db)  # the shared database stays as it is
    con = connect(db)
    try:
        assert ingest_online(con, tiny_cfg.serve.event_log_dir) == 3
        assert ingest_online(con, tiny_cfg.serve.event_log_dir) == 0
        rows = con.execute(
            "SELECT item_id, event_type, seq, source FROM events "
            "WHERE session_id = 'online-visit' ORDER BY seq").fetchall()
    finally:
        con.close()
    assert rows == [(items[0], "click", 0, "live"),
                    (items[1], "click", 1, "live"),
                    (items[2], "purchase", 2, "live")]
    cfg = tiny_cfg.data
    cfg.duckdb_path, cfg.max_train_sessions = str(db), 0
    assert "online-visit" not in load_sessions(cfg).train.session_ids
    cfg.include_live = True
    data = load_sessions(cfg)
    at = data.train.session_ids.index("online-visit")
    index = data.catalog.index
    assert list(data.train.items[at]) == [index[i] for i in items]


async def test_failed_log_write_is_503_and_leaves_the_session_as_it_was(
        client, tiny_bundle, tiny_cfg):
    """The write overlaps the answer's computing; when it fails, the
    event was not accepted: 503 with a JSON body, and the session (its
    events, roles and identity) as before it."""
    from serve import app as app_keys
    items = _items(tiny_bundle, 3)
    sid = "disk-trouble"
    r = await client.post("/v1/events", json={
        "session_id": sid, "item_id": items[0],
        "filters": None, "event_type": "click"})
    assert r.status == 200
    before = await (await client.get(
        f"/v1/recommendations?session_id={sid}")).json()
    event_log = client.server.app[app_keys.EVENT_LOG]
    real_write = event_log._write

    def disk_full(data: bytes) -> None:
        raise OSError(28, "No space left on device")
    event_log._write = disk_full
    for body in ({"item_id": items[1], "device_id": "d1"},
                 {"event_type": "filter", "filters": {"size": "XL"}}):
        r = await client.post("/v1/events", json={"session_id": sid,
                                                  **body})
        assert r.status == 503
        error = await r.json()
        assert error["error"] == "event_log_unavailable"
        assert "not accepted" in error["expected"]
        assert r.headers["Retry-After"]
    after = await (await client.get(
        f"/v1/recommendations?session_id={sid}")).json()
    assert after["events"] == before["events"] == 1
    assert after["roles_seen"] == before["roles_seen"]
    assert after["role"] == before["role"]
    assert ([x["item_id"] for x in after["recommendations"]]
            == [x["item_id"] for x in before["recommendations"]])
    event_log._write = real_write  # the disk has room again
    r = await client.post("/v1/events", json={
        "session_id": sid, "item_id": items[2]})
    assert r.status == 200 and (await r.json())["events"] == 2
    await client.close()
    logged = [rec["event"]["item_id"]
              for rec in read_records(tiny_cfg.serve.event_log_dir)
              if rec["session_id"] == sid]
    assert logged == [items[0], items[2]]


async def test_concurrent_clicks_of_one_session_apply_in_order(
        client, tiny_bundle, tiny_cfg):
    from serve import app as app_keys
    items = _items(tiny_bundle, 8)
    sid = "double-clicker"
    answers = await asyncio.gather(*(client.post("/v1/events", json={
        "session_id": sid, "item_id": item, "event_id": f"e{j}"})
        for j, item in enumerate(items)))
    assert [r.status for r in answers] == [200] * len(items)
    seen = sorted([(await r.json())["events"] for r in answers])
    assert seen == list(range(1, len(items) + 1))  # one at a time
    session = client.server.app[app_keys.STORE].get(sid)
    assert len(client.server.app[app_keys.SESSION_LOCKS]) == 0
    await client.close()
    logged = [rec["event"]["event_id"]
              for rec in read_records(tiny_cfg.serve.event_log_dir)
              if rec["session_id"] == sid]
    assert [e.event_id for e in session.events] == logged
    assert sorted(logged) == [f"e{j}" for j in range(len(items))]


def _slow_disk(event_log, fail: bool, seconds: float = 0.3):
    """The writer thread's write takes `seconds`, then fails or not."""
    import time
    real = event_log._write

    def write(data: bytes) -> None:
        time.sleep(seconds)
        if fail:
            raise OSError(5, "Input/output error")
        real(data)
    event_log._write = write
    return real


async def _pending_click(client, body: dict):
    """A click whose write is on its way to disk (slowly) while the
    caller goes on; later writes are fast again."""
    from serve import app as app_keys
    event_log = client.server.app[app_keys.EVENT_LOG]
    real = _slow_disk(event_log, fail=False)
    click = asyncio.create_task(client.post("/v1/events", json=body))
    await asyncio.sleep(0.1)
    event_log._write = real
    return click


async def test_nothing_counts_before_the_disk_has_it(client, tiny_bundle):
    """While a click's write is pending nobody sees its event; when the
    write fails, a new session is not left behind, and a logout that
    came meanwhile stays done."""
    from serve import app as app_keys
    app = client.server.app
    items = _items(tiny_bundle, 2)
    store = app[app_keys.STORE]
    real = _slow_disk(app[app_keys.EVENT_LOG], fail=True)
    # A new session whose first event fails: nothing stored.
    r = await client.post("/v1/events", json={"session_id": "fresh",
                                              "item_id": items[0]})
    assert r.status == 503 and store.get("fresh") is None
    app[app_keys.EVENT_LOG]._write = real
    r = await client.post("/v1/events", json={
        "session_id": "known", "item_id": items[0], "user_id": "u1"})
    assert r.status == 200
    _slow_disk(app[app_keys.EVENT_LOG], fail=True)
    click = asyncio.create_task(client.post("/v1/events", json={
        "session_id": "known", "item_id": items[1]}))
    await asyncio.sleep(0.1)  # the click's write is on its way
    seen = await (await client.get(
        "/v1/recommendations?session_id=known")).json()
    assert seen["events"] == 1  # not the pending one
    app[app_keys.EVENT_LOG]._write = real  # the logout's write works
    r = await client.post("/v1/sessions/known/logout", json={})
    assert r.status == 200
    assert (await click).status == 503
    session = store.get("known")
    assert session.user_id is None and len(session.events) == 1


async def test_a_logout_or_login_during_a_click_waits_for_it(
        client, tiny_bundle, tiny_cfg):
    """Calls that write a session take its lock: a logout, then an
    identify, sent while a click's write is pending, apply after it,
    and nothing of either is lost."""
    from serve import app as app_keys
    app = client.server.app
    items = _items(tiny_bundle, 2)
    r = await client.post("/v1/events", json={
        "session_id": "busy", "item_id": items[0], "user_id": "u2"})
    assert r.status == 200
    click = await _pending_click(client, {"session_id": "busy",
                                          "item_id": items[1]})
    r = await client.post("/v1/sessions/busy/logout", json={})
    assert r.status == 200
    r = await click
    assert r.status == 200 and (await r.json())["events"] == 2
    session = app[app_keys.STORE].get("busy")
    assert session.user_id is None and len(session.events) == 2
    click = await _pending_click(client, {
        "session_id": "busy", "item_id": items[0], "event_id": "third"})
    r = await client.post("/v1/sessions/busy/identify",
                          json={"user_id": "u3"})
    assert r.status == 200 and (await click).status == 200
    session = app[app_keys.STORE].get("busy")
    assert session.user_id == "u3"
    assert [e.event_type for e in session.events][-2:] == ["click",
                                                          "login"]
    assert session.events[-2].event_id == "third"


async def test_an_answer_that_fails_keeps_its_logged_event(
        client, tiny_bundle, tiny_cfg, monkeypatch):
    """The write reached the disk, answering failed (a 500): the event
    is in its session too, as a restart would rebuild it."""
    from serve import app as app_keys
    from serve import handlers

    async def broken(*args, **kwargs):
        raise RuntimeError("engine fault")
    items = _items(tiny_bundle, 2)
    monkeypatch.setattr(handlers.batcher, "recommend", broken)
    r = await client.post("/v1/events", json={
        "session_id": "faulty", "item_id": items[0], "event_id": "f1"})
    assert r.status == 500
    session = client.server.app[app_keys.STORE].get("faulty")
    assert [e.event_id for e in session.events] == ["f1"]
    await client.close()
    assert [rec["event"]["event_id"]
            for rec in read_records(tiny_cfg.serve.event_log_dir)
            if rec["session_id"] == "faulty"] == ["f1"]


async def test_writer_survives_a_file_it_cannot_open(tmp_path):
    """Rotation to a new file fails once (the directory is full, say):
    that batch fails, the next ones are written."""
    log = EventLog(tmp_path, max_bytes=200)  # rotate every few records
    await log.open()
    real = log._open_file
    calls = []

    def fails_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real()
    log._open_file = fails_once
    record = {"v": 1, "pad": "x" * 150}
    await log.append(record)  # fits the first file
    try:
        await log.append(record)  # needs a new file, which fails
        raised = False
    except EventLogError:
        raised = True
    assert raised
    for _ in range(3):  # the thread lives on, rotating as it should
        await asyncio.wait_for(log.append(record), timeout=5)
    await log.close()
    assert len(list(read_records(tmp_path))) == 4
    assert len(log_files(tmp_path)) >= 2  # it did rotate


async def test_a_session_evicted_during_its_write_keeps_its_history(
        client, tiny_bundle):
    from serve import app as app_keys
    from serve.sessions import Session
    app = client.server.app
    store = app[app_keys.STORE]
    items = _items(tiny_bundle, 2)
    r = await client.post("/v1/events", json={"session_id": "old",
                                              "item_id": items[0]})
    assert r.status == 200
    click = await _pending_click(client, {"session_id": "old",
                                          "item_id": items[1]})
    store.max_sessions = 1
    store.put(Session("newer"))  # the cap evicts "old" meanwhile
    assert store.get("old") is None
    assert (await click).status == 200
    assert len(store.get("old").events) == 2
