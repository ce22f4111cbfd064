"""The household simulator, and how role and stitching evaluations read
sessions (on real catalogue items of the tiny bundle)."""

import numpy as np
import pytest

from rolecall.bundle import load
from rolecall.config import RankingConfig
from serve.engine import Engine
from tests.conftest import EXACT
from train.role_eval import positions
from train.simulate import SimEvent, SimSession, simulate
from train.stitch_eval import customer_baskets
from train.sessions import SessionSet


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(load(tiny_bundle), RankingConfig(), EXACT)


def _ids(engine, gender, age, n):
    return [int(i) for i in engine.prior_order
            if engine.genders[i] == gender and engine.ages[i] == age][:n]


def test_simulator_is_seeded_and_records_the_truth(engine):
    women = _ids(engine, "women", "adult", 6)
    men = _ids(engine, "men", "adult", 4)
    girls = _ids(engine, "girls", "child", 4)
    baskets = [np.array(women[:3]), np.array(women[3:]),
               np.array(men[:2]), np.array(men[2:]), np.array(girls[:2]),
               np.array(girls[2:])]
    a = simulate(baskets, engine.genders, engine.ages, 30, seed=3)
    b = simulate(baskets, engine.genders, engine.ages, 30, seed=3)
    assert [[(e.item, e.member) for e in s.events] for s in a] == \
        [[(e.item, e.member) for e in s.events] for s in b]
    for s in a:
        assert len({e.member for e in s.events}) >= 2  # role switches
        for e in s.events:
            if e.item is not None:
                assert engine.role_of(e.item).key == e.role
            else:
                assert e.filters["gender"] == e.role.split("/")[0]


def test_positions_after_switch_hidden_and_same_role(engine):
    w1, w2, w3 = _ids(engine, "women", "adult", 3)
    m1, m2 = _ids(engine, "men", "adult", 2)
    ev = [SimEvent("view", i, None, "x", "") for i in (w1, w2, m1, m2, w3)]
    pos = positions([SimSession("s", ev)], engine)
    # targets: w2 (same role), m1 (hidden: nothing showed men yet),
    # m2 (right after the switch at m1), w3 (hidden switch back)
    assert [p.kind for p in pos] == ["same_role", "hidden_switch",
                                     "after_switch", "hidden_switch"]
    assert pos[2].role.key == "men/adult" and pos[2].since_switch == 1


def test_customer_baskets_need_earlier_purchases():
    earlier = SessionSet(items=[np.array([1, 2]), np.array([3])],
                         user_ids=["a", None])
    later = SessionSet(items=[np.array([4, 5]), np.array([6, 7]),
                              np.array([8])], user_ids=["a", "b", "a"])
    out = customer_baskets(earlier, later, 10)
    assert len(out) == 1 and out[0][0] == [1, 2]
    assert list(out[0][1]) == [4, 5]
