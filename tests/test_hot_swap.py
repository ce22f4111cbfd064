"""Bundle hot swap under load, refusals, admin token; and finished
sessions joining the look-alike bank without a retrain."""

import asyncio
import json
import shutil
import time

import pytest

from rolecall.bundle import load
from rolecall.config import RankingConfig, ServeConfig
from serve.app import ENGINE, FEED, make_app
from serve.engine import Engine

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def cfg(tiny_cfg):
    tiny_cfg.serve.admin_token = TOKEN
    tiny_cfg.serve.item_index = "flat"  # HNSW takes longer than a test
    tiny_cfg.serve.lookalike_index = "flat"
    return tiny_cfg


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    # Shared: a swap replaces the app's engine, never changes this one.
    serve = ServeConfig(item_index="flat", lookalike_index="flat")
    return Engine(load(tiny_bundle), RankingConfig(), serve)


@pytest.fixture
async def client(aiohttp_client, engine, cfg):
    return await aiohttp_client(make_app(cfg, engine))


def _copy(bundle, tmp_path, version):
    out = tmp_path / version
    shutil.copytree(bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["version"] = version  # not checksummed: tells them apart
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _women(engine, n):
    return [engine.bundle.item_ids[i] for i in engine.popular
            if engine.genders[i] == "women"][:n]


async def test_swap_under_load_drops_no_request(client, tiny_bundle,
                                                tmp_path):
    new = _copy(tiny_bundle, tmp_path, "swapped")
    old = client.app[ENGINE].version
    items = _women(client.app[ENGINE], 4)

    async def clicks(c):
        versions = []
        for j in range(25):
            r = await client.post("/v1/events", json={
                "session_id": f"load-{c}", "item_id": items[j % 4]})
            assert r.status == 200, await r.text()
            versions.append((await r.json())["bundle"])
        return versions

    load_tasks = [asyncio.create_task(clicks(c)) for c in range(6)]
    await asyncio.sleep(0)
    r = await client.post("/v1/admin/bundle", json={"path": str(new)},
                          headers=AUTH)
    assert r.status == 200, await r.text()
    assert (await r.json()) == {"bundle": "swapped", "path": str(new),
                                "previous": old}
    per_client = await asyncio.gather(*load_tasks)
    seen = [v for versions in per_client for v in versions]
    assert len(seen) == 150 and set(seen) <= {old, "swapped"}
    # Each client's answers switch once, from old to new, never back.
    for versions in per_client:
        assert versions == sorted(versions, key=lambda v: v == "swapped")
    r = await client.get("/v1/recommendations",
                         params={"session_id": "load-0"})
    body = await r.json()
    assert body["bundle"] == "swapped" and body["events"] == 25
    assert (await (await client.get("/healthz")).json())["bundle"] == \
        "swapped"


@pytest.mark.parametrize("damage", ["checksum", "missing", "nowhere"])
async def test_broken_bundle_is_refused_and_old_one_serves(
        client, tiny_bundle, tmp_path, damage):
    bad = _copy(tiny_bundle, tmp_path, "broken")
    if damage == "checksum":
        with (bad / "item_vectors.npy").open("r+b") as f:
            f.seek(-1, 2)
            f.write(b"\x01" if f.read(1) != b"\x01" else b"\x02")
    elif damage == "missing":
        (bad / "bank_futures.npz").unlink()
    else:
        bad = tmp_path / "no-such-bundle"
    old = client.app[ENGINE].version
    r = await client.post("/v1/admin/bundle", json={"path": str(bad)},
                          headers=AUTH)
    body = await r.json()
    assert r.status == 409 and body["error"] == "bundle_refused"
    assert str(bad) in body["found"]
    health = await (await client.get("/healthz")).json()
    assert health["bundle"] == old


async def test_admin_needs_the_token(aiohttp_client, client, tiny_bundle,
                                     cfg, monkeypatch):
    r = await client.post("/v1/admin/bundle", json={"path": "x"},
                          headers={"Authorization": "Bearer wrong"})
    assert r.status == 401 and (await r.json())["error"] == "unauthorized"
    r = await client.post("/v1/admin/bundle", json={"path": "x"})
    assert r.status == 401
    cfg.serve.admin_token = ""
    monkeypatch.delenv("ROLECALL_ADMIN_TOKEN", raising=False)
    r = await client.post("/v1/admin/bundle", json={"path": "x"},
                          headers=AUTH)
    body = await r.json()
    assert r.status == 403 and "ROLECALL_ADMIN_TOKEN" in body["expected"]


async def test_purchase_adds_the_session_to_the_bank_at_once(
        aiohttp_client, tiny_bundle, cfg):
    cfg.ranking.lookalike_weight = 1.0  # votes alone rank the answer
    # A few neighbours: the tiny model's states are all close, and with
    # the default 200 the buyer's vote would drown among equals.
    cfg.ranking.lookalikes = 3
    engine = Engine(load(tiny_bundle), cfg.ranking, cfg.serve)
    client = await aiohttp_client(make_app(cfg, engine))
    a, b, c = _women(engine, 3)
    before = len(engine.bundle.bank)
    for item, kind in ((a, "click"), (b, "click"), (c, "purchase")):
        r = await client.post("/v1/events", json={
            "session_id": "buyer", "item_id": item, "event_type": kind})
        assert r.status == 200
    assert len(engine.bundle.bank) == before + 2  # states after a, b
    # The next shopper who clicks a, b is nearest to the buyer's state
    # and hears what the buyer went on to buy.
    for item in (a, b):
        r = await client.post("/v1/events", json={
            "session_id": "next", "item_id": item})
    recs = (await r.json())["recommendations"]
    voted = [x for x in recs if "buyer" in x["lookalike_sessions"]]
    assert voted and voted[0]["item_id"] == c


async def test_idle_session_joins_the_bank_after_lookalike_idle_s(
        aiohttp_client, tiny_bundle, cfg):
    engine = Engine(load(tiny_bundle), cfg.ranking, cfg.serve)
    client = await aiohttp_client(make_app(cfg, engine))
    feed = client.app[FEED]
    before = len(engine.bundle.bank)
    for item in _women(engine, 3):
        await client.post("/v1/events", json={"session_id": "idler",
                                              "item_id": item})
    assert feed.sweep() == 0  # not idle yet
    later = time.time() + cfg.serve.lookalike_idle_s + 1
    assert feed.sweep(now=later) == 2
    assert len(engine.bundle.bank) == before + 2
    assert engine.bundle.bank.session_ids[-2:] == ["idler", "idler"]
    assert feed.sweep(now=later) == 0  # once only


async def test_heap_is_frozen_at_start_and_again_after_a_swap(
        aiohttp_client, engine, cfg, tiny_bundle, tmp_path, caplog):
    """Start-up objects are hidden from the cyclic collector (a full
    pass over them stalls the loop); a swap freezes the new bundle."""
    import gc
    import logging
    cfg.serve.freeze_heap = True
    caplog.set_level(logging.INFO, logger="serve.app")
    try:
        client = await aiohttp_client(make_app(cfg, engine))
        assert gc.get_freeze_count() > 10_000
        assert "objects frozen after start" in caplog.text
        r = await client.post(
            "/v1/admin/bundle", headers=AUTH,
            json={"path": str(_copy(tiny_bundle, tmp_path, "v2"))})
        assert r.status == 200, await r.text()
        assert "objects frozen after a bundle swap" in caplog.text
        assert gc.get_freeze_count() > 10_000
        r = await client.post("/v1/events", json={
            "session_id": "after-freeze",
            "item_id": _women(client.app[ENGINE], 1)[0]})
        assert r.status == 200
    finally:
        gc.unfreeze()
