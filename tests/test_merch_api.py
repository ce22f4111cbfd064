"""Merchandising through the HTTP API (issue 5): hard filters at any
selectivity, the live catalogue (new items, stock, auth, bad bodies,
restart), and explanations whose parts add up to the score."""

import json
import os
import shutil

import numpy as np
import pytest

from rolecall.bundle import load
from rolecall.config import RankingConfig
from serve.app import ENGINE, make_app
from serve.engine import Engine
from conftest import EXACT

TOKEN = "merch-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MERCH = dict(margin_weight=0.5, new_arrival_weight=0.2,
             campaign_weight=0.3, campaign_tags=["autumn-edit"],
             stock_weight=0.1, max_per_product_type=2)


@pytest.fixture(scope="module")
def merch_engine(tiny_bundle):
    """Business weights and a diversity cap on; shared, never changed."""
    return Engine(load(tiny_bundle), RankingConfig(**MERCH), EXACT)


@pytest.fixture
def cfg(tiny_cfg):
    tiny_cfg.serve.admin_token = TOKEN
    return tiny_cfg


@pytest.fixture
async def admin(aiohttp_client, tiny_bundle, cfg):
    """An app around an engine of its own: catalogue writes change it."""
    engine = Engine(load(tiny_bundle), RankingConfig(), EXACT)
    return await aiohttp_client(make_app(cfg, engine))


def _women(engine, n=1, sized=True):
    return [engine.bundle.item_ids[i] for i in engine.popular
            if engine.genders[i] == "women"
            and (engine.sizes[i] or not sized)][:n]


def _catalogue_masks(engine):
    """In stock and women/adult fit, from the bundle's own columns."""
    items, b = engine.bundle.items, engine.business
    stocked = np.array([s is None or any(u > 0 for u in s.values())
                        for s in b.stock])
    g = np.array(items["gender"], dtype=object)
    a = np.array(items["age_group"], dtype=object)
    fit = (((g == "women") | (g == "unisex") | (g == None))  # noqa: E711
           & ((a == "adult") | (a == None)))  # noqa: E711
    return stocked, fit


def _price_for_share(engine, share):
    """A price bound that leaves at most `share` of the catalogue,
    and the next lower price would leave less (prices tie a lot)."""
    price = np.sort(engine.business.price[np.isfinite(
        engine.business.price)])
    cut = int(share * len(engine.bundle.item_ids))
    below = np.searchsorted(price, price[cut], side="right") > cut
    return float(price[np.searchsorted(price, price[cut]) - 1]
                 if below else price[cut])


def _check_parts(rec):
    parts = rec["parts"]
    assert list(parts) == ["model", "lookalikes", "history", "business"]
    assert sum(parts.values()) == rec["score"]  # exactly
    assert rec["reason"]
    if rec["score"]:
        shares = sum(e["share"] for e in rec["evidence"])
        assert shares == pytest.approx(1.0, abs=1e-9)
    for e in rec["evidence"]:
        assert parts[e["part"]] != 0
        if e["part"] == "business":
            assert sum(e["signals"].values()) == parts["business"]


@pytest.mark.parametrize("share", [0.5, 0.2, 0.05, 0.01])
async def test_filters_hold_and_k_comes_back_at_any_selectivity(
        client, engine, share):
    stocked, fit = _catalogue_masks(engine)
    bound = _price_for_share(engine, share)
    in_price = engine.business.price <= bound
    clicked = _women(engine)[0]
    r = await client.post("/v1/events", json={
        "session_id": f"sel-{share}", "item_id": clicked})
    assert r.status == 200
    for sid, role_fit in ((f"sel-{share}", fit),
                          (f"cold-{share}", np.ones_like(fit))):
        for k in (1, 20, 100):
            r = await client.get("/v1/recommendations", params={
                "session_id": sid, "k": str(k), "price_max": str(bound)})
            assert r.status == 200, await r.text()
            recs = (await r.json())["recommendations"]
            eligible = stocked & role_fit & in_price
            eligible[engine.index[clicked]] &= not sid.startswith("sel")
            assert eligible.mean() <= share
            assert len(recs) == min(k, int(eligible.sum()))
            assert len({x["item_id"] for x in recs}) == len(recs)
            for x in recs:
                assert eligible[engine.index[x["item_id"]]], x
                _check_parts(x)


async def test_diversity_and_business_parts_hold_under_filters(
        aiohttp_client, merch_engine, cfg):
    client = await aiohttp_client(make_app(cfg, merch_engine))
    engine = merch_engine
    stocked, fit = _catalogue_masks(engine)
    clicked = _women(engine, 3)
    types = engine.bundle.items["product_type"]
    for n, item in enumerate(clicked):
        r = await client.post("/v1/events", json={
            "session_id": "div", "item_id": item, "k": 30})
        assert r.status == 200
        recs = (await r.json())["recommendations"]
        for share in (None, 0.05, 0.01):
            if share is not None:
                bound = _price_for_share(engine, share)
                r = await client.get("/v1/recommendations", params={
                    "session_id": "div", "k": "30",
                    "price_max": str(bound)})
                recs = (await r.json())["recommendations"]
                eligible = stocked & fit & (engine.business.price <= bound)
            else:
                eligible = stocked & fit
            assert len(recs) == 30
            counts = {}
            for x in recs:
                i = engine.index[x["item_id"]]
                assert eligible[i] and x["item_id"] not in clicked[:n + 1]
                counts[types[i]] = counts.get(types[i], 0) + 1
                _check_parts(x)
            # The cap holds whenever the eligible items allow it.
            assert max(counts.values()) <= 2, counts
    assert any(x["parts"]["business"] > 0 for x in recs)


def test_a_capped_candidate_is_not_backfilled_again(tiny_bundle):
    """With the cap at 1 and one product type eligible, the cap gives
    way; a candidate it passed over is also in the backfill pool, and
    must still be shown once."""
    from serve import session_roles
    from serve.engine import Where
    from serve.sessions import Event, Session
    engine = Engine(load(tiny_bundle), RankingConfig(
        max_per_product_type=1, role_mode="off"), EXACT)
    types = engine.bundle.items["product_type"]
    session = Session("cap")
    for n, item in enumerate(_women(engine, 3, sized=False)):
        i = engine.index[item]
        ev = Event(f"e{n}", float(n), "click", i)
        session_roles.apply(session, ev, engine.role_of(i))
        session.events.append(ev)
    clicked = {e.item for e in session.events}
    tried = 0
    for t in sorted({types[i] for i in clicked}):
        where = Where(product_type=t)
        eligible = engine.eligible(None, where).copy()
        eligible[list(clicked)] = False
        answer = engine.recommend(session, 100, where=where)
        shown = [a.item for a in answer.items]
        assert len(set(shown)) == len(shown), t
        assert len(shown) == min(100, int(eligible.sum())), t
        tried += eligible.sum() > 1
    assert tried


async def test_every_answer_explains_parts_that_add_up(client, engine,
                                                       merch_engine):
    items = _women(engine, 4)
    for n, item in enumerate(items):
        r = await client.post("/v1/events", json={
            "session_id": "expl", "item_id": item})
        body = await r.json()
        for x in body["recommendations"]:
            _check_parts(x)
            kinds = {e["part"] for e in x["evidence"]}
            if "model" in kinds:
                model = next(e for e in x["evidence"]
                             if e["part"] == "model")
                assert model["item_id"] in items[:n + 1]
            if "lookalikes" in kinds:
                votes = next(e for e in x["evidence"]
                             if e["part"] == "lookalikes")
                assert votes["voters"] >= len(votes["sessions"]) > 0
    r = await client.get("/v1/recommendations",
                         params={"session_id": "nobody", "k": "5"})
    for x in (await r.json())["recommendations"]:  # backfill
        assert x["backfill"] and x["score"] == 0.0
        _check_parts(x)
    from serve.sessions import Event, Session
    from serve import session_roles
    session = Session("direct")
    i = engine.index[items[0]]
    ev = Event("e", 1.0, "click", i)
    session_roles.apply(session, ev, merch_engine.role_of(i))
    session.events.append(ev)
    answer = merch_engine.recommend(session, 50)
    assert any(a.business > 0 for a in answer.items)
    for a in answer.items:
        assert ((a.model + a.lookalikes) + a.history) + a.business \
            == a.score
        assert sum(a.signals.values()) == a.business


def _new_item(item_id="new-0001", **extra):
    return {"item_id": item_id, "name": "Linen wide trousers",
            "product_type": "Trousers", "product_group": "Garment Lower body",
            "colour": "Black", "department": "Trousers",
            "index_group": "Ladieswear", "section": "Womens Everyday "
            "Collection", "index_name": "Ladieswear", "price": 0.0421,
            "margin": 0.6, "stock": {"S": 4, "M": 2}, "arrival":
            "2020-09-22", "campaigns": ["autumn-edit"], **extra}


async def test_new_item_is_recommendable_in_the_next_response(admin):
    engine = admin.app[ENGINE]
    n = len(engine.bundle.item_ids)
    r = await admin.put("/v1/items", json={"items": [_new_item()]},
                        headers=AUTH)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["catalog_items"] == n + 1 and body["logged"]
    assert body["items"][0]["created"] and body["items"][0]["in_stock"]
    # The only item at this price: the answer must be it, recommended.
    r = await admin.get("/v1/recommendations", params={
        "session_id": "fresh", "k": "5", "price_min": "0.0421",
        "price_max": "0.0421", "product_type": "Trousers",
        "department": "Trousers"})
    recs = (await r.json())["recommendations"]
    assert [x["item_id"] for x in recs] == ["new-0001"]
    _check_parts(recs[0])
    # It can be clicked, and browsed.
    r = await admin.post("/v1/events", json={"session_id": "twin",
                                             "item_id": "new-0001"})
    body = await r.json()
    assert r.status == 200 and body["role"]["key"] == "women/adult"
    r = await admin.get("/v1/items", params={"q": "linen wide"})
    assert "new-0001" in [x["item_id"] for x in
                          (await r.json())["items"]]


async def test_a_new_arrival_weight_lifts_a_new_item(aiohttp_client,
                                                     tiny_bundle, cfg):
    engine = Engine(load(tiny_bundle),
                    RankingConfig(new_arrival_weight=1.0), EXACT)
    client = await aiohttp_client(make_app(cfg, engine))
    item = _women(engine)[0]
    r = await client.post("/v1/events", json={"session_id": "na",
                                              "item_id": item})
    assert "new-0001" not in [x["item_id"] for x in
                              (await r.json())["recommendations"]]
    newest = engine.signal_params.as_of
    from rolecall.merch import iso_day
    r = await client.put("/v1/items", headers=AUTH, json={
        "items": [_new_item(arrival=iso_day(newest))]})
    assert r.status == 200
    r = await client.get("/v1/recommendations",
                         params={"session_id": "na", "k": "20"})
    recs = (await r.json())["recommendations"]
    new = [x for x in recs if x["item_id"] == "new-0001"]
    assert new and new[0]["reason"] == "new in"
    assert new[0]["parts"]["business"] > 0 == new[0]["parts"]["model"]
    for x in recs:
        _check_parts(x)


async def test_stock_to_zero_removes_the_item_from_the_next_response(
        admin):
    engine = admin.app[ENGINE]
    item = _women(engine)[0]
    r = await admin.post("/v1/events", json={"session_id": "st",
                                             "item_id": item})
    top = (await r.json())["recommendations"][0]["item_id"]
    stock = engine.business.stock[engine.index[top]]
    zero = {size: 0 for size in stock} if stock else {"one size": 0}
    r = await admin.put("/v1/items", headers=AUTH, json={
        "items": [{"item_id": top, "stock": zero}]})
    assert r.status == 200 and not (await r.json())["items"][0]["in_stock"]
    r = await admin.get("/v1/recommendations",
                        params={"session_id": "st", "k": "100"})
    recs = (await r.json())["recommendations"]
    assert top not in [x["item_id"] for x in recs] and len(recs) == 100
    # One size back in stock brings it back for that size's shoppers.
    size = next(iter(zero))
    r = await admin.put("/v1/items", headers=AUTH, json={
        "items": [{"item_id": top, "stock": {size: 3}}]})
    r = await admin.get("/v1/recommendations",
                        params={"session_id": "st", "k": "100"})
    assert top in [x["item_id"] for x in
                   (await r.json())["recommendations"]]


async def test_browsing_sees_a_changed_name_and_department(admin):
    engine = admin.app[ENGINE]
    item = _women(engine)[0]
    r = await admin.get("/v1/departments")  # builds the catalogue
    assert r.status == 200
    r = await admin.put("/v1/items", headers=AUTH, json={"items": [
        {"item_id": item, "name": "Zebra gizmo", "department": "Gizmos"}]})
    assert r.status == 200
    r = await admin.get("/v1/items", params={"q": "zebra gizmo"})
    assert [x["item_id"] for x in (await r.json())["items"]] == [item]
    r = await admin.get("/v1/items", params={"department": "Gizmos"})
    assert r.status == 200
    assert [x["item_id"] for x in (await r.json())["items"]] == [item]
    r = await admin.get("/v1/departments")
    assert {"department": "Gizmos", "index_group": engine.bundle.items[
        "index_group"][engine.index[item]], "items": 1} in \
        (await r.json())["departments"]


async def test_a_new_index_group_moves_a_known_item_to_its_role(admin):
    engine = admin.app[ENGINE]
    item = _women(engine)[0]
    r = await admin.put("/v1/items", headers=AUTH, json={"items": [
        {"item_id": item, "index_group": "Menswear"}]})
    assert r.status == 200
    i = engine.index[item]
    assert (engine.bundle.items["gender"][i],
            engine.bundle.items["age_group"][i]) == ("men", "adult")
    r = await admin.post("/v1/events", json={
        "session_id": "moved", "event_type": "click", "item_id": item})
    assert (await r.json())["role"]["key"] == "men/adult"


async def test_changes_survive_a_restart(aiohttp_client, admin,
                                         tiny_bundle, cfg):
    engine = admin.app[ENGINE]
    item = _women(engine)[0]
    r = await admin.put("/v1/items", headers=AUTH, json={"items": [
        _new_item("new-0002"), {"item_id": item, "price": 1.5}]})
    assert r.status == 200
    restarted = Engine(load(tiny_bundle), RankingConfig(), EXACT)
    client = await aiohttp_client(make_app(cfg, restarted))
    assert restarted.bundle.item_ids[-1] == "new-0002"
    assert restarted.business.price[restarted.index[item]] == 1.5
    assert np.array_equal(restarted.bundle.item_vectors,
                          engine.bundle.item_vectors)
    r = await client.get("/v1/recommendations", params={
        "session_id": "again", "price_min": "1.5", "price_max": "1.5"})
    assert [x["item_id"] for x in (await r.json())["recommendations"]] \
        == [item]


async def test_catalogue_writes_need_the_admin_token(admin, aiohttp_client,
                                                     tiny_cfg, engine):
    mine = admin.app[ENGINE]
    item = _women(mine)[0]
    before = dict(mine.business.stock[mine.index[item]])
    body = {"items": [{"item_id": item, "stock": {"S": 0}}]}
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": TOKEN}):
        r = await admin.put("/v1/items", json=body, headers=headers)
        assert r.status == 401
        assert (await r.json())["error"] == "unauthorized"
    tiny_cfg.serve.admin_token = ""
    open_app = await aiohttp_client(make_app(tiny_cfg, engine))
    r = await open_app.put("/v1/items", json=body, headers=AUTH)
    assert r.status == 403
    assert mine.business.stock[mine.index[item]] == before
    assert engine.business.stock[engine.index[item]] == before


@pytest.mark.parametrize("payload, status, error", [
    ("{nope", 400, "malformed_json"),
    ('{"items": ' + "[" * 5000 + "]" * 5000 + "}", 400,
     "malformed_json"),
    ("[]", 422, "invalid_request"),
    (json.dumps({"items": []}), 422, "invalid_request"),
    (json.dumps({"items": [{"item_id": "a b"}]}), 422, "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "stock": {"M": -1}}]}), 422,
     "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "stock": {"M": "3"}}]}), 422,
     "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "margin": 1.5}]}), 422,
     "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "price": -2}]}), 422,
     "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "gender": "martian"}]}),
     422, "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "arrival": "soon"}]}), 422,
     "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1", "colour": "red",
                            "size": "M"}]}), 422, "invalid_request"),
    (json.dumps({"items": [{"item_id": "x1"}, {"item_id": "x1"}]}), 422,
     "duplicate_item"),
    # A good item beside a bad one: neither is applied.
    (json.dumps({"items": [{"item_id": "x1", "price": 1.0},
                           {"item_id": "x2", "stock": []}]}), 422,
     "invalid_request"),
])
async def test_bad_catalogue_bodies_get_4xx_and_change_nothing(
        admin, cfg, payload, status, error):
    engine = admin.app[ENGINE]
    n = len(engine.bundle.item_ids)
    prices = engine.business.price.copy()
    r = await admin.put("/v1/items", data=payload, headers={
        **AUTH, "Content-Type": "application/json"})
    assert r.status == status
    body = await r.json()
    assert body["error"] == error and body["expected"]
    assert len(engine.bundle.item_ids) == n and "x1" not in engine.index
    assert np.array_equal(engine.business.price, prices, equal_nan=True)
    r = await admin.put("/v1/items", data="x", headers={
        **AUTH, "Content-Type": "text/plain"})
    assert r.status == 415
    assert not os.path.exists(cfg.serve.catalog_log_path)


async def test_bad_request_filters_get_422(client, engine):
    for params in ({"price_max": "cheap"}, {"price_min": "-1"},
                   {"department": ""},
                   {"price_min": "0.5", "price_max": "0.1"}):
        r = await client.get("/v1/recommendations",
                             params={"session_id": "w", **params})
        assert r.status == 422
    r = await client.post("/v1/events", json={
        "session_id": "w", "item_id": _women(engine)[0],
        "where": {"colour": "red"}})
    assert r.status == 422
    r = await client.post("/v1/events", json={
        "session_id": "w", "item_id": _women(engine)[0],
        "where": {"price_min": 0.5, "price_max": 0.1}})
    assert r.status == 422
    assert "price_min at most price_max" in (await r.json())["expected"]


def test_a_bundle_without_business_data_serves_with_defaults(
        tiny_bundle, tmp_path, caplog):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    (old / "business.json").unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["business.json"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    bundle = load(old)
    assert "no business.json" in caplog.text
    assert np.isnan(bundle.business.price).all()
    engine = Engine(bundle, RankingConfig(**MERCH), EXACT)
    assert engine.in_stock.all()
    from serve.sessions import Session
    assert len(engine.recommend(Session("s"), 10).items) == 10
