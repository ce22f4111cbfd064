"""Baselines on tiny hand-made sessions, plus brute-force references."""
import math

import numpy as np
import pytest

from train.baselines import (
    BASELINES,
    VSTAN,
    ItemCooccurrence,
    Popularity,
    SequentialRules,
    VSkNN,
    make_baseline,
)

DAY = 86_400.0


def sess(*rows):
    return [np.array(r, dtype=np.int64) for r in rows]


def fit(model, sessions, n_items, ts=None):
    ts = np.arange(len(sessions), dtype=float) if ts is None else ts
    return model.fit(sessions, np.asarray(ts, float), n_items)


def assert_scores(got, want):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_contract(name):
    model = fit(make_baseline(name), sess([0, 1], [1, 2, 0], [3]), 5)
    assert model.name == name
    for prefix in ([], [0], [2, 1]):
        s = model.score(np.array(prefix, np.int64))
        assert s.shape == (5,) and s.dtype == np.float32
        assert np.all(np.isfinite(s))
    with pytest.raises(ValueError, match="prefix ids"):
        model.score(np.array([5]))
    with pytest.raises(ValueError, match="start_ts"):
        make_baseline(name).fit(sess([0]), np.zeros(2), 5)
    with pytest.raises(ValueError, match="item ids"):
        make_baseline(name).fit(sess([0, 9]), np.zeros(1), 5)


def test_make_baseline_checks_names_and_params():
    assert BASELINES == {
        "pop": Popularity, "cooc": ItemCooccurrence,
        "sr": SequentialRules, "vsknn": VSkNN, "vstan": VSTAN,
    }
    model = make_baseline("vsknn", k=7)
    assert isinstance(model, VSkNN) and model.params.k == 7
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("gru")
    with pytest.raises(TypeError):
        make_baseline("vsknn", kk=7)
    with pytest.raises(ValueError, match="weighting"):
        make_baseline("vsknn", weighting="log")
    with pytest.raises(ValueError, match="similarity"):
        make_baseline("vstan", similarity="jaccard")


def test_popularity_counts_every_click():
    model = fit(Popularity(), sess([0, 1], [1, 2], [1, 0], [3]), 5)
    # item 0: 2, item 1: 3, items 2, 3: 1, item 4: never seen
    assert_scores(model.score(np.array([4])), [2, 3, 1, 1, 0])


def test_cooccurrence_picks_the_co_bought_item():
    data = sess([0, 1], [0, 1], [0, 2], [3, 4])
    model = fit(make_baseline("cooc", recency_decay=0.5), data, 6)
    # row of item 0: item 1 in two sessions, item 2 in one, self 0
    assert_scores(model.score(np.array([0])), [0, 2, 1, 0, 0, 0])
    # decay 0.5: 1.0 * row(0) + 0.5 * row(3), row(3) = item 4 once
    assert_scores(model.score(np.array([3, 0])), [0, 2, 1, 0, 0.5, 0])


def test_cooccurrence_counts_sessions_not_clicks():
    model = fit(ItemCooccurrence(), sess([0, 1, 1, 0]), 2)
    assert_scores(model.score(np.array([0])), [0, 1])


def test_sequential_rules_prefer_the_following_item():
    model = fit(make_baseline("sr", n_last=1), sess([0, 1, 2], [3, 0, 1]), 5)
    # 0->1: 1 + 1, 0->2: 1/2 (two clicks later); nothing points back
    assert_scores(model.score(np.array([0])), [0, 2, 0.5, 0, 0])
    # only the last click counts with n_last=1
    assert_scores(model.score(np.array([2, 0])), [0, 2, 0.5, 0, 0])
    assert_scores(model.score(np.array([2])), np.zeros(5))


def test_sequential_rules_window_prune_and_n_last():
    data = sess([0, 1, 2], [3, 0, 1])
    short = fit(make_baseline("sr", window=1, n_last=1), data, 5)
    assert_scores(short.score(np.array([0])), [0, 2, 0, 0, 0])
    pruned = fit(make_baseline("sr", prune=1, n_last=1), data, 5)
    assert_scores(pruned.score(np.array([0])), [0, 2, 0, 0, 0])
    two = fit(make_baseline("sr", n_last=2), data, 5)
    # rules(0) + rules(3) / 2, rules(3) = {0: 1, 1: 1/2}
    assert_scores(two.score(np.array([3, 0])), [0.5, 2.25, 0.5, 0, 0])


KNN_DATA = sess([0, 1, 2], [0, 3], [4, 5], [1, 2, 6])
PLAIN = dict(weighting="linear", idf=False)


def test_vsknn_scores_by_neighbour_similarity():
    model = fit(make_baseline("vsknn", **PLAIN), KNN_DATA, 8)
    # prefix weights: item 1 (last) 1, item 0 1/2
    # sims: s0 = 1.5, s1 = 0.5, s3 = 1.0, s2 shares nothing
    # item 0: s0+s1, item 1: s0+s3, 2: s0+s3, 3: s1, 6: s3
    want = [2.0, 2.5, 2.5, 0.5, 0, 0, 1.0, 0]
    assert_scores(model.score(np.array([0, 1])), want)


def test_vsknn_top_neighbour_and_sample():
    nearest = fit(make_baseline("vsknn", k=1, **PLAIN), KNN_DATA, 8)
    # only s0 (sim 1.5) survives
    want = [1.5, 1.5, 1.5, 0, 0, 0, 0, 0]
    assert_scores(nearest.score(np.array([0, 1])), want)
    newest = make_baseline("vsknn", sample_size=1, **PLAIN)
    fit(newest, KNN_DATA, 8)
    # only the newest candidate s3 (sim 1.0) is looked at
    want = [0, 1, 1, 0, 0, 0, 1, 0]
    assert_scores(newest.score(np.array([0, 1])), want)


def test_vsknn_idf_and_recency_order_from_start_ts():
    model = make_baseline("vsknn", weighting="linear", idf=True)
    fit(model, KNN_DATA, 8)
    s = model.score(np.array([1]))
    # s0 and s3 sim 1; idf(2) = log(4/2), idf(6) = log(4/1)
    assert s[2] == pytest.approx(2 * math.log(2), rel=1e-6)
    assert s[6] == pytest.approx(math.log(4), rel=1e-6)
    # equal sims: the neighbour with the later start_ts wins
    data = sess([0, 1], [0, 2])
    model = make_baseline("vsknn", k=1, idf=False)
    fit(model, data, 3, ts=[5.0, 1.0])
    assert_scores(model.score(np.array([0])), [1, 1, 0])


def test_vstan_recency_and_position_in_neighbour():
    data = sess([0, 1, 2, 3], [5, 0], [6, 7])
    params = dict(lambda_snh=1.0, lambda_inh=1.0, idf=False)
    model = fit(make_baseline("vstan", **params), data, 8,
                ts=[0.0, DAY, DAY])
    e = math.exp
    # s0 is one day older: sim e^-1; s1 sim 1
    # s0 items at distance 0..3 from item 0, s1 item 5 at distance 1
    want = [e(-1) + 1, e(-2), e(-3), e(-4), 0, e(-1), 0, 0]
    assert_scores(model.score(np.array([0])), want)


def test_vstan_matches_the_newest_shared_prefix_item():
    params = dict(lambda_spw=1.0, lambda_inh=1.0, idf=False)
    model = fit(make_baseline("vstan", **params), sess([0, 1, 2, 3, 4]), 5)
    e = math.exp
    sim = 1 + e(-1)  # item 3 weighs 1, item 1 one click older e^-1
    # distances from item 3 (position 3): 3, 2, 1, 0, 1
    want = [sim * e(-d) for d in (3, 2, 1, 0, 1)]
    assert_scores(model.score(np.array([1, 3])), want)


def test_vstan_repeated_neighbour_item_counts_once():
    model = make_baseline("vstan", lambda_inh=1.0, idf=False)
    fit(model, sess([5, 0, 6, 5]), 7)
    # item 5 at distances 1 and 2 from item 0: keep the best, e^-1
    s = model.score(np.array([0]))
    assert s[5] == pytest.approx(math.exp(-1), rel=1e-6)
    assert s[6] == pytest.approx(math.exp(-1), rel=1e-6)
    assert np.count_nonzero(s) == 3


def test_vstan_cosine_prefers_the_shorter_neighbour():
    data = sess([0, 1], [0, 2, 3, 4])
    dot = make_baseline("vstan", k=1, idf=False)
    fit(dot, data, 5, ts=[0.0, 0.0])
    assert np.flatnonzero(dot.score(np.array([0]))).tolist() == [0, 2, 3, 4]
    cos = make_baseline("vstan", k=1, similarity="cosine", idf=False)
    fit(cos, data, 5, ts=[0.0, 0.0])
    assert np.flatnonzero(cos.score(np.array([0]))).tolist() == [0, 1]


def brute_vsknn(sessions, prefix, n_items, k, sample_size):
    """Loop version of VSkNN with 'same' weights; sessions by recency."""
    sets = [set(s.tolist()) for s in sessions]
    pset = set(prefix.tolist())
    cand = [i for i, s in enumerate(sets) if s & pset][-sample_size:]
    sims = {i: float(len(sets[i] & pset)) for i in cand}
    nbrs = sorted(cand, key=lambda i: (-sims[i], -i))[:k]
    out = np.zeros(n_items)
    for i in nbrs:
        for item in sets[i]:
            out[item] += sims[i]
    return out


@pytest.mark.parametrize("k,sample_size", [(100, 1000), (3, 1000), (5, 8)])
def test_vsknn_matches_brute_force(k, sample_size):
    rng = np.random.default_rng(0)
    n_items = 30
    data = [rng.integers(0, n_items, rng.integers(1, 6)) for _ in range(200)]
    model = make_baseline(
        "vsknn", k=k, sample_size=sample_size, weighting="same", idf=False
    )
    fit(model, data, n_items)
    for _ in range(20):
        prefix = rng.integers(0, n_items, rng.integers(1, 4))
        want = brute_vsknn(data, prefix, n_items, k, sample_size)
        assert_scores(model.score(prefix), want)


def brute_vstan(sessions, ts, prefix, n_items, p):
    """Loop version of VSTAN without top-k cuts; sessions by recency."""
    last = {int(item): j for j, item in enumerate(prefix)}
    n = len(prefix)
    w = {i: math.exp(-(n - 1 - j) / p.lambda_spw) for i, j in last.items()}
    out = np.zeros(n_items)
    for seq, t in zip(sessions, ts):
        shared = set(seq.tolist()) & set(last)
        if not shared:
            continue
        sim = sum(w[i] for i in shared)
        sim *= math.exp(-(ts[-1] - t) / DAY / p.lambda_snh)
        match = max(
            (last[int(x)], pos) for pos, x in enumerate(seq) if x in last
        )[1]
        best = {}
        for pos, x in enumerate(seq.tolist()):
            w3 = math.exp(-abs(pos - match) / p.lambda_inh)
            best[x] = max(best.get(x, 0.0), w3)
        for x, w3 in best.items():
            out[x] += sim * w3
    return out


def test_vstan_matches_brute_force():
    rng = np.random.default_rng(1)
    n_items = 25
    data = [rng.integers(0, n_items, rng.integers(1, 8)) for _ in range(150)]
    ts = np.sort(rng.uniform(0, 5 * DAY, len(data)))
    model = make_baseline(
        "vstan", k=1000, lambda_spw=1.5, lambda_snh=2.0, lambda_inh=3.0,
        idf=False,
    )
    fit(model, data, n_items, ts=ts)
    for _ in range(20):
        prefix = rng.integers(0, n_items, rng.integers(1, 5))
        want = brute_vstan(data, ts, prefix, n_items, model.params)
        np.testing.assert_allclose(model.score(prefix), want, rtol=1e-5)
