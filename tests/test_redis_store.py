"""Sessions in a real Redis, shared by separate server processes."""

import json

import pytest

from redis_server import redis_server
from serve.redis_store import RedisStore
from serve.sessions import Event, Session
from servers import get, launch, post, ready, stop


@pytest.fixture
def redis_url(tmp_path):
    yield from redis_server(tmp_path)


def test_store_round_trips_sessions_and_counts_them(redis_url):
    store = RedisStore(redis_url, ttl_s=60)
    s = Session("r1", user_id="u1", device_id="d1",
                events=[Event("e1", 1.5, "click", item=7,
                              filters={"size": "M"})],
                active_role="women/adult",
                roles={"women/adult": {"gender": "women"}})
    store.put(s)
    store.put(Session("r2"))
    assert store.get("r1") == s and len(store) == 2
    assert dict(store.items()) == {"r1": s, "r2": Session(
        "r2", last_seen=store.get("r2").last_seen)}
    store.delete("r1")
    assert store.get("r1") is None and len(store) == 1
    assert store.get("never") is None
    store.close()


def _women(bundle, n):
    items = json.loads((bundle / "items.json").read_text())
    return [i for i, g in zip(items["item_id"], items["gender"])
            if g == "women"][:n]


def test_workers_and_another_process_share_sessions(tiny_bundle,
                                                    tmp_path, redis_url):
    """A: one command starting two workers on one port; B: a separate
    server process. All three hold the same sessions."""
    opts = ("serve.store=redis", f"serve.redis_url={redis_url}",
            f"serve.event_log_dir={tmp_path / 'events'}")
    a, url_a = launch(tiny_bundle, tmp_path, "a", "serve.workers=2",
                      *opts)
    b, url_b = launch(tiny_bundle, tmp_path, "b", *opts)
    try:
        ready(a, url_a, tmp_path / "a.log")
        ready(b, url_b, tmp_path / "b.log")
        x, y = _women(tiny_bundle, 2)
        assert post(f"{url_a}/v1/events", {"session_id": "shared",
                                           "item_id": x})["events"] == 1
        # The other process continues the session A began.
        body = post(f"{url_b}/v1/events", {"session_id": "shared",
                                           "item_id": y})
        assert body["events"] == 2
        # A fresh connection per call: the kernel picks A's worker.
        for n in range(3, 13):
            body = post(f"{url_a}/v1/events", {"session_id": "shared",
                                               "item_id": x})
            assert body["events"] == n
        body = get(f"{url_b}/v1/recommendations?session_id=shared")
        assert body["events"] == 12
        assert get(f"{url_b}/healthz")["sessions"] == 1
        log = (tmp_path / "a.log").read_text()
        assert "[w0]" in log and "[w1]" in log  # both workers started
        writers = {f.name.split("-")[2]
                   for f in (tmp_path / "events").iterdir()}
        assert writers <= {"w0", "w1"}  # one log series per process
    finally:
        stop(a)
        stop(b)
