"""The HTTP API through the real app, with a tiny bundle trained on H&M."""

import json

import aiohttp
import pytest

from serve.app import STORE




def _women_items(engine, n=3):
    return [engine.bundle.item_ids[i] for i in engine.popular
            if engine.genders[i] == "women"][:n]


async def test_click_returns_k_catalogue_items_with_reasons(client, engine):
    item = _women_items(engine)[0]
    r = await client.post("/v1/events", json={
        "session_id": "s1", "event_type": "click", "item_id": item})
    assert r.status == 200
    body = await r.json()
    recs = body["recommendations"]
    assert len(recs) == 20
    ids = [x["item_id"] for x in recs]
    assert len(set(ids)) == 20 and item not in ids
    assert all(i in engine.index for i in ids)
    for x in recs:
        assert x["reason"]
        assert sum(x["parts"].values()) == pytest.approx(x["score"],
                                                         abs=1e-5)
    assert [x["score"] for x in recs] == sorted(
        (x["score"] for x in recs), reverse=True)
    assert body["role"]["gender"] == "women"
    assert body["events"] == 1 and body["accepted"]


async def test_recommendations_without_event_and_k(client, engine):
    items = _women_items(engine, 2)
    for item in items:
        await client.post("/v1/events", json={"session_id": "s2",
                                              "item_id": item})
    r = await client.get("/v1/recommendations",
                         params={"session_id": "s2", "k": "5"})
    body = await r.json()
    assert r.status == 200 and len(body["recommendations"]) == 5
    assert body["events"] == 2
    r = await client.get("/v1/recommendations",
                         params={"session_id": "new", "k": "3"})
    body = await r.json()
    assert [x["reason"] for x in body["recommendations"]] == [
        "popular right now"] * 3


@pytest.mark.parametrize("payload, status, error", [
    ("{not json", 400, "malformed_json"),
    ("[1, 2]", 422, "invalid_request"),
    (json.dumps({"event_type": "click", "item_id": "x"}), 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "item_id": "0000000000"}), 422,
     "unknown_item"),
    (json.dumps({"session_id": "s3", "event_type": "click"}), 422,
     "missing_item"),
    (json.dumps({"session_id": "s3", "event_type": "jump"}), 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "event_type": "filter"}), 422,
     "missing_filters"),
    (json.dumps({"session_id": "s 3!", "item_id": "x"}), 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "colour": "red"}), 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "item_id": "x", "ts": 1e300}), 422,
     "invalid_request"),
    ('{"session_id": "s3", "item_id": "x", "ts": Infinity}', 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "item_id": "x", "k": True}), 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "item_id": "x",
                 "user_id": "has space/slash"}), 422, "invalid_request"),
    (json.dumps({"session_id": "s3", "event_type": "filter",
                 "filters": {"gender": "martian"}}), 422, "invalid_request"),
    (json.dumps({"session_id": "s3", "event_type": "filter",
                 "filters": {"age_group": "ancient"}}), 422,
     "invalid_request"),
    (json.dumps({"session_id": "s3", "event_type": "filter",
                 "filters": {"size": "M" * 1000}}), 422, "invalid_request"),
])
async def test_bad_input_gets_4xx_json_and_loses_nothing(
        client, engine, payload, status, error):
    item = _women_items(engine)[0]
    ok = await client.post("/v1/events", json={"session_id": "s3",
                                               "item_id": item})
    assert ok.status == 200
    r = await client.post("/v1/events", data=payload,
                          headers={"Content-Type": "application/json"})
    assert r.status == status
    body = await r.json()
    assert body["error"] == error and body["expected"]
    session = client.app[STORE].get("s3")
    assert len(session.events) == 1  # the accepted event is still there
    again = await client.post("/v1/events", json={"session_id": "s3",
                                                  "item_id": item})
    assert again.status == 200  # and the server keeps serving


async def test_bad_k_and_wrong_content_type(client, engine):
    item = _women_items(engine)[0]
    for k in (0, 101, "ten"):
        r = await client.post("/v1/events", json={
            "session_id": "s4", "item_id": item, "k": k})
        assert r.status == 422
    r = await client.get("/v1/recommendations",
                         params={"session_id": "s4", "k": "-1"})
    assert r.status == 422 and (await r.json())["error"] == "invalid_k"
    r = await client.post("/v1/events", data="session_id=s4",
                          headers={"Content-Type": "text/plain"})
    assert r.status == 415
    r = await client.post("/v1/events", data=b"{" + b" " * 70000 + b"}",
                          headers={"Content-Type": "application/json"})
    assert r.status == 413
    r = await client.get("/v1/nothing-here")
    assert r.status == 404 and (await r.json())["error"] == "not_found"


async def test_health_and_metrics(client, engine):
    item = _women_items(engine)[0]
    await client.post("/v1/events", json={"session_id": "s5",
                                          "item_id": item})
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["items"] == 105542
    text = await (await client.get("/metrics")).text()
    assert 'rolecall_request_seconds_count{endpoint="/v1/events"}' in text
    assert 'rolecall_stage_seconds_count{stage="encode"}' in text


async def test_body_that_does_not_match_its_encoding_is_no_500(client):
    # aiohttp's protocol may close the connection on a broken payload
    # before any answer is written; when it does answer, it is our 400.
    try:
        r = await client.post("/v1/events", data=b'{"session_id": "g"}',
                              headers={"Content-Type": "application/json",
                                       "Content-Encoding": "gzip",
                                       "Connection": "close"})
    except aiohttp.ServerDisconnectedError:
        pass
    else:
        assert r.status == 400
        assert (await r.json())["error"] == "undecodable_body"
    ok = await client.get("/v1/recommendations",
                          params={"session_id": "g", "k": "3"})
    assert ok.status == 200  # and the server keeps serving
    r = await client.get("/v1/recommendations",
                         params={"session_id": "caf\u00e9"})
    assert r.status == 422
