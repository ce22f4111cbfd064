"""Role changes inside one session, through the HTTP API (issue 3)."""

import dataclasses

import numpy as np

from conftest import EXACT
from rolecall.roles import Role
from serve.engine import Engine


def _items(engine, gender, age, n, sized=False):
    out = []
    for i in engine.prior_order:
        if engine.genders[i] == gender and engine.ages[i] == age:
            if not sized or engine.sizes[i]:
                out.append(engine.bundle.item_ids[i])
        if len(out) == n:
            break
    return out


async def _post(client, **body):
    r = await client.post("/v1/events", json={"session_id": "family",
                                              **body})
    assert r.status == 200, await r.text()
    return await r.json()


def _share(engine, recs, gender, age):
    ok = [engine.genders[engine.index[x["item_id"]]] in (gender, "unisex")
          and engine.ages[engine.index[x["item_id"]]] == age for x in recs]
    return sum(ok) / len(recs)


async def test_switch_to_partner_and_back_restores_her_size(client, engine):
    women = _items(engine, "women", "adult", 3, sized=True)
    men = _items(engine, "men", "adult", 1)
    await _post(client, item_id=women[0])
    body = await _post(client, event_type="filter", filters={"size": "S"})
    assert body["role"]["key"] == "women/adult"
    assert body["role"]["size"] == "S"
    await _post(client, item_id=women[1])

    body = await _post(client, item_id=men[0])
    assert body["switched"] and body["previous_role"] == "women/adult"
    assert body["role"]["key"] == "men/adult"
    assert body["role"]["size"] is None
    recs = body["recommendations"]
    assert len(recs) == 20
    assert _share(engine, recs, "men", "adult") >= 0.9

    body = await _post(client, item_id=women[2])
    assert body["switched"] and body["role"]["size"] == "S"
    recs = body["recommendations"]
    assert len(recs) == 20
    assert _share(engine, recs, "women", "adult") >= 0.9
    for x in recs:
        sizes = engine.sizes[engine.index[x["item_id"]]]
        assert not sizes or "S" in sizes
    keys = {r["key"] for r in body["roles_seen"]}
    assert keys == {"women/adult", "men/adult"}


async def test_child_role_and_unisex_items_do_not_force_a_switch(
        client, engine):
    women = _items(engine, "women", "adult", 1)
    kid = _items(engine, "girls", "child", 1)
    unknown = [engine.bundle.item_ids[i] for i in engine.prior_order
               if engine.ages[i] is None][:1]
    await _post(client, item_id=women[0])
    body = await _post(client, item_id=kid[0])
    assert body["switched"] and body["role"]["key"] == "girls/child"
    assert _share(engine, body["recommendations"], "girls", "child") >= 0.9
    if unknown:
        body = await _post(client, item_id=unknown[0])
        assert not body["switched"]
        assert body["role"]["key"] == "girls/child"


async def test_gender_filter_switches_role(client, engine):
    women = _items(engine, "women", "adult", 1)
    await _post(client, item_id=women[0])
    body = await _post(client, event_type="filter",
                       filters={"gender": "men", "size": "L"})
    assert body["switched"] and body["role"] == {
        "gender": "men", "age_group": "adult", "size": "L",
        "key": "men/adult"}
    assert _share(engine, body["recommendations"], "men", "adult") >= 0.9


def test_demote_shrinks_and_filter_drops_what_does_not_fit(engine):
    role = Role("men", "adult")
    cand = np.arange(2000)
    parts = np.ones(2000)
    fit = engine.fits(role)[cand]
    assert fit.any() and not fit.all()
    # filter (the default): parts untouched, eligible() drops the rest.
    same = engine._demote(role, cand, parts)
    assert np.array_equal(same[1], parts)
    assert not engine.eligible(role)[cand[~fit]].any()
    demoting = Engine(engine.bundle, dataclasses.replace(
        engine.ranking, role_mode="demote", role_demotion=0.05),
        EXACT)
    _, shrunk = demoting._demote(role, cand, parts)
    assert np.array_equal(shrunk, np.where(fit, 1.0, 0.05))
    assert demoting.eligible(role)[cand[~fit]].any()  # shown, lower
