"""The bench's parts: index choice and recall, the load generator against
the real app, the floor endpoint and the serialize stage, and the
session-memory part's counts."""

import asyncio
import json
import sys
from itertools import islice

import faiss
import numpy as np
import pytest
from aiohttp import web

from rolecall.bench import (free_port, highest_rate, overload_table,
                            served_index_table, sessions_table,
                            write_sessions)
from rolecall.bundle import load
from rolecall.config import (BenchConfig, IndexConfig, RankingConfig,
                             ServeConfig)
from rolecall.index import build_index, choose, recall_at_k
from rolecall.loadgen import clicks
from serve.app import ENGINE, STORE, make_app
from serve.engine import Engine


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Unit rows around 50 centres: shaped like learned embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d))
    x = centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal(
        (n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def test_auto_picks_exact_when_small_ivf_when_large():
    p = IndexConfig(auto_flat_below=1000)
    assert choose("auto", 999, p) == "flat"
    assert choose("auto", 1000, p) == "ivf"
    assert choose("ivf", 10, p) == "ivf"
    xb = clustered(1200, 16, 0)
    assert isinstance(build_index(xb[:500], "auto", p), faiss.IndexFlat)
    assert isinstance(build_index(xb, "auto", p), faiss.IndexIVFFlat)
    with pytest.raises(ValueError, match="one of"):
        choose("annoy", 10, p)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_at_20_against_exact(kind):
    x = clustered(10_200, 32, 1)  # queries from the same clusters
    xb, xq = x[:10_000], x[10_000:]
    p = IndexConfig(hnsw_m=16, hnsw_ef_construction=40, ivf_nprobe=16)
    _, I_exact = build_index(xb, "flat").search(xq, 20)
    _, I = build_index(xb, kind, p).search(xq, 20)
    assert recall_at_k(I, I_exact) >= 0.95
    assert recall_at_k(I_exact, I_exact) == 1.0


@pytest.fixture(scope="module")
def exact_engine(tiny_bundle):
    return Engine(load(tiny_bundle), RankingConfig(), ServeConfig(
        item_index="flat", lookalike_index="flat"))


def test_item_vectors_hnsw_keeps_inner_products(exact_engine):
    """Item vectors have unequal norms: HNSW searches them via L2."""
    xb = exact_engine.bundle.item_vectors[:8000]
    xq = np.asarray(exact_engine.bundle.bank.vectors[:50])
    xq = np.hstack([xq, np.ones((50, 1), np.float32)])
    D_exact, I_exact = build_index(xb, "flat").search(xq, 20)
    D, I = build_index(xb, "hnsw", IndexConfig()).search(xq, 20)
    assert recall_at_k(I, I_exact) >= 0.95
    # Scores stay inner products, as the blend expects.
    assert D[:, 0] == pytest.approx(D_exact[:, 0], abs=1e-3)


def test_engine_picks_indexes_from_serve_config(tiny_bundle,
                                                exact_engine):
    approx = Engine(load(tiny_bundle), RankingConfig(), ServeConfig(
        item_index="flat", lookalike_index="hnsw", index_cache_dir=""))
    assert isinstance(approx.bundle.bank.index, faiss.IndexHNSWFlat)
    assert isinstance(exact_engine.bundle.bank.index, faiss.IndexFlat)
    xq = exact_engine.bundle.bank.vectors[100:150]
    _, I_exact = exact_engine.bundle.bank.search(xq, 50)
    _, I = approx.bundle.bank.search(xq, 50)
    assert recall_at_k(I, I_exact) >= 0.95


def test_built_indexes_are_cached_and_read_back(exact_engine, tmp_path,
                                                 caplog):
    """A restart reads the approximate indexes its start built; other
    rows or settings build their own."""
    xb = exact_engine.bundle.item_vectors[:6000]  # unequal norms: MIPS
    xq = np.hstack([exact_engine.bundle.bank.vectors[:40],
                    np.ones((40, 1), np.float32)])
    for kind in ("hnsw", "ivf"):
        built = build_index(xb, kind, IndexConfig(), k=30,
                            cache_dir=tmp_path)
        caplog.clear()
        with caplog.at_level("INFO", logger="rolecall.index"):
            again = build_index(xb, kind, IndexConfig(), k=30,
                                cache_dir=tmp_path)
        assert "read from" in caplog.text
        D1, I1 = built.search(xq, 20)
        D2, I2 = again.search(xq, 20)
        assert np.array_equal(I1, I2) and np.allclose(D1, D2)
    assert len(list(tmp_path.glob("*.faiss"))) == 2
    # Another efConstruction is another index, in its own file.
    build_index(xb, "hnsw", IndexConfig(hnsw_ef_construction=40),
                cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.faiss"))) == 3
    # A damaged file is built again and replaced, not trusted.
    for f in tmp_path.glob("hnsw-*.faiss"):
        f.write_bytes(b"not an index")
    rebuilt = build_index(xb, "hnsw", IndexConfig(), k=30,
                          cache_dir=tmp_path)
    _, I_exact = build_index(xb, "flat").search(xq, 20)
    assert recall_at_k(rebuilt.search(xq, 20)[1], I_exact) >= 0.95
    caplog.clear()
    with caplog.at_level("INFO", logger="rolecall.index"):
        build_index(xb, "hnsw", IndexConfig(), k=30, cache_dir=tmp_path)
    assert "read from" in caplog.text


async def test_ping_floor_and_serialize_stage(aiohttp_client, tiny_cfg,
                                              exact_engine):
    client = await aiohttp_client(make_app(tiny_cfg, exact_engine))
    r = await client.get("/v1/ping")
    assert r.status == 200 and await r.json() == {"ok": True}
    engine = client.app[ENGINE]
    item = engine.bundle.item_ids[int(engine.popular[0])]
    r = await client.post("/v1/events", json={
        "session_id": "s", "event_type": "click", "item_id": item})
    timing = (await r.json())["timing_ms"]
    assert {"parse", "encode", "item_search", "lookalike_search",
            "rank", "serialize"} <= set(timing)


async def test_loadgen_replays_real_sessions_in_order_counts_errors(
        tiny_cfg, exact_engine, tmp_path):
    sessions_file = tmp_path / "sessions.json"
    tiny_cfg.bench.max_sessions = 12
    assert write_sessions(tiny_cfg, sessions_file) == 12
    real = json.loads(sessions_file.read_text())
    assert any(len(items) > 1 for _, items in real)
    bad = ["bad", ["0000000000"]]  # not in the catalogue: a 422
    sessions = [bad] + real
    sessions_file.write_text(json.dumps(sessions))
    app = make_app(tiny_cfg, exact_engine)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rate, duration, lanes = 25, 1.0, 4
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rolecall.loadgen", "--url",
            f"http://127.0.0.1:{port}", "--sessions", str(sessions_file),
            "--rate", str(rate), "--duration", str(duration), "--lanes",
            str(lanes), "--tag", "t", "--out", str(tmp_path / "r.json"))
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        store = app[STORE]
        sent = list(islice(clicks(sessions, "t", lanes),
                           int(rate * duration)))
    finally:
        await runner.cleanup()
    result = json.loads((tmp_path / "r.json").read_text())
    expected_errors = sum(item == "0000000000" for _, item in sent)
    assert result["sent"] == len(sent) == 25
    assert result["errors"] == expected_errors >= 1
    assert result["error_kinds"] == {"http 422": expected_errors}
    assert result["ok"] == len(sent) - expected_errors
    assert result["latency_ms"]["p50"] > 0
    by_session: dict[str, list[str]] = {}
    for sid, item in sent:
        if item != "0000000000":
            by_session.setdefault(sid, []).append(item)
    item_ids = app[ENGINE].bundle.item_ids
    for sid, items in by_session.items():
        held = store.get(sid)
        assert held is not None, sid
        ids = [item_ids[e.item] for e in held.item_events()]
        assert ids == items  # replayed in the basket's order


def test_sessions_part_holds_a_bounded_count_once_expiry_or_cap_bites():
    bench = BenchConfig(session_count=6000, session_checkpoint=1000,
                        session_rate=1000, session_ttl_s=2,
                        session_cap=1500)
    table = sessions_table(bench)
    runs: dict[str, list] = {}
    for row in table.rows:
        runs.setdefault(row[0], []).append(row)
    expiry, cap = runs.values()
    assert expiry[0][1] == cap[0][1] == "before the run"
    # Idle expiry: sessions of the last 2 simulated seconds, and now.
    assert [r[2] for r in expiry[1:]] == [1000, 2000] + [2001] * 4
    assert expiry[-1][3] == "3,999 / 0"
    assert [r[2] for r in cap[1:]] == [1000] + [1500] * 5
    assert cap[-1][3] == "0 / 4,500"
    assert all(isinstance(r[4], int) and r[4] > 0 for r in table.rows)


def test_overload_part_measures_capacity_then_twice_it_then_low(
        tiny_cfg, tiny_bundle, tmp_path):
    """The real server and load generator, for a second a phase; what
    the figures are is the bench's business, not this test's."""
    tiny_cfg.serve.bundle = str(tiny_bundle)
    tiny_cfg.bench = BenchConfig(
        max_sessions=50, warmup_s=0.5, duration_s=1.0, overload_s=1.0,
        overload_recovery_s=1.0, overload_compare_off=False, pin=False)
    table = overload_table(tiny_cfg, tmp_path,
                           ["serve.item_index=flat",
                            "serve.lookalike_index=flat"])
    probe, over, low = table.rows
    assert [r[1] for r in table.rows] == [
        "capacity (16 shoppers)", "2x capacity", "then 0.25x"]
    assert probe[4] > 0 and over[2] == round(2 * probe[4])
    assert 0 <= over[5] <= 1 and low[2] < over[2]
    assert all(r[3] > 0 for r in table.rows)  # sent


def test_served_index_part_measures_real_states_against_exact(
        tiny_cfg, tiny_bundle, tmp_path):
    tiny_cfg.serve.bundle = str(tiny_bundle)
    tiny_cfg.bench = BenchConfig(max_sessions=40, scale_queries=30)
    tiny_cfg.serve.index = IndexConfig(hnsw_ef_construction=40)
    table = served_index_table(tiny_cfg, tmp_path)
    by_part: dict[str, list] = {}
    for row in table.rows:
        by_part.setdefault(row[0].split(" ")[0], []).append(row)
    assert set(by_part) == {"items", "look-alikes"}
    for part, rows in by_part.items():
        flat, *approximate = rows
        assert flat[1:3] == ["flat", "exact"] and flat[6] == 1.0
        assert [r[1] for r in approximate] == ["hnsw"] + ["ivf"] * (
            len(approximate) - 1) and len(approximate) >= 5
        assert all(0 <= r[6] <= 1 for r in approximate)
        # More lists probed never finds fewer of the exact neighbours.
        ivf = [r[6] for r in approximate[1:]]
        assert ivf == sorted(ivf)
        assert rows[0][7] == (tiny_cfg.ranking.candidates if part ==
                              "items" else tiny_cfg.ranking.lookalikes)


def test_highest_rate_needs_every_lower_rate_to_pass():
    def run(target, p99, errors=0, answered=None):
        return {"target": target, "errors": errors,
                "latency_ms": {"p99": p99},
                "throughput": target if answered is None else answered}
    runs = [run(100, 5), run(250, 8), run(450, 39), run(500, 18)]
    assert highest_rate(runs) == 250  # 500 passing by luck is not it
    assert highest_rate(runs[:2]) == 250
    assert highest_rate([run(100, 5, errors=1)]) == 0
    assert highest_rate([run(100, 5), run(200, 5, answered=150)]) == 100
