"""Micro-batching (issue 8): a batch answers exactly what single clicks do."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from serve import app as app_keys
from serve.app import make_app
from serve.batcher import MicroBatcher, window_ms


def _sessions(engine, n=24, seed=3):
    """Real catalogue items in sessions of different lengths."""
    rng = np.random.default_rng(seed)
    popular = engine.prior_order[:2000]
    return [[int(i) for i in rng.choice(popular, size=1 + j % 7)]
            for j in range(n)]


def test_retrieve_many_matches_one_at_a_time(engine):
    sessions = _sessions(engine)
    queries = [(items, [1] * len(items)) for items in sessions]
    batched = engine.retrieve_many(queries)
    for (items, types), (I, p, votes) in zip(queries, batched):
        I1, p1, votes1 = engine.retrieve(items, types, {})
        # The padded batch differs from one row in the last float bit
        # (1e-7): items may only swap places with a near tie.
        np.testing.assert_allclose(p, p1, rtol=1e-4, atol=1e-7)
        assert _same_up_to_ties(I, p, I1, p1)
        v, v1 = np.zeros(len(engine.index)), np.zeros(len(engine.index))
        v[votes.indices], v1[votes1.indices] = votes.data, votes1.data
        np.testing.assert_allclose(v, v1, atol=1e-5)


def _same_up_to_ties(I, p, I1, p1, tol=1e-5) -> bool:
    """Where the lists differ, the item is a near tie of the one in its
    place (or, at the cut-off, of the last one kept)."""
    where = {int(x): j for j, x in enumerate(I1)}
    for j, x in enumerate(I):
        if int(x) != int(I1[j]):
            other = where.get(int(x))
            theirs = p1[other] if other is not None else p1[-1]
            if abs(theirs - p[j]) > tol:
                return False
    return True


def test_window_is_off_on_cpu_unless_asked(engine):
    assert engine.device.type == "cpu"
    assert window_ms(None, engine) == 0.0
    assert window_ms(3.0, engine) == 3.0
    with pytest.raises(ValueError, match="batch_window_ms"):
        window_ms(-1.0, engine)
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(1.0, 0)


async def _answers(client, engine, sessions, tag):
    async def one(j, items):
        r = await client.post("/v1/events", json={
            "session_id": f"{tag}-{j}", "event_type": "click",
            "item_id": engine.bundle.item_ids[items[-1]], "k": 12})
        assert r.status == 200, await r.text()
        return [x["item_id"] for x in (await r.json())["recommendations"]]

    # Earlier clicks one by one, then every session's last at once.
    for j, items in enumerate(sessions):
        for i in items[:-1]:
            r = await client.post("/v1/events", json={
                "session_id": f"{tag}-{j}", "event_type": "click",
                "item_id": engine.bundle.item_ids[i]})
            assert r.status == 200
    return await asyncio.gather(*(one(j, s) for j, s in
                                  enumerate(sessions)))


async def test_batched_server_answers_like_the_unbatched_one(
        aiohttp_client, engine, tiny_cfg):
    sessions = _sessions(engine, n=16, seed=5)
    # Shedding off: 16 clicks at once on exact search must all be
    # answered here, however slow the machine.
    tiny_cfg.serve.max_inflight = 0
    plain = await aiohttp_client(make_app(tiny_cfg, engine))
    assert app_keys.BATCHER not in plain.app
    expected = await _answers(plain, engine, sessions, "plain")

    cfg = dataclasses.replace(tiny_cfg, serve=dataclasses.replace(
        tiny_cfg.serve, batch_window_ms=20.0, max_batch=8,
        event_log_dir=""))
    batched = await aiohttp_client(make_app(cfg, engine))
    got = await _answers(batched, engine, sessions, "batched")
    assert got == expected
    batcher = batched.app[app_keys.BATCHER]
    assert batcher.clicks == sum(len(s) for s in sessions)
    # The 16 concurrent last clicks went in batches of up to 8.
    assert batcher.batches < batcher.clicks
