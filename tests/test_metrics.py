"""Hand-computed checks of ranks, next-item positions and metrics."""
import math

import numpy as np
import pytest

from train.metrics import (
    RankMetrics,
    conservative_ranks,
    next_item_positions,
)


def ranks_of(row, target):
    scores = np.array([row], dtype=np.float32)
    return conservative_ranks(scores, np.array([target]))[0]


def test_unique_best_target_has_rank_one():
    assert ranks_of([0.1, 0.9, 0.3], 1) == 1.0


def test_target_tied_with_two_others_ranks_third():
    # others >= 0.7: items 2 and 3 -> rank 1 + 2 = 3
    assert ranks_of([0.2, 0.7, 0.7, 0.7, 0.1], 1) == 3.0


def test_higher_and_tied_items_both_count():
    # others >= 0.5: item 1 (0.9), items 2, 3 (ties) -> 1 + 3 = 4
    assert ranks_of([0.5, 0.9, 0.5, 0.5, 0.1], 0) == 4.0


def test_all_zero_row_ranks_target_last():
    # four other items tie at 0 -> 1 + 4 = 5
    assert ranks_of([0.0] * 5, 2) == 5.0


def test_lost_targets_rank_infinite():
    scores = np.array(
        [[-np.inf, 0.0, 0.0], [np.nan, 1.0, 0.0], [0.3, 0.2, 0.1]],
        dtype=np.float32,
    )
    ranks = conservative_ranks(scores, np.array([0, 0, -1]))
    assert ranks.dtype == np.float64
    assert np.all(np.isinf(ranks))


def test_nan_and_neg_inf_elsewhere_never_outrank():
    # only item 3 (0.8) beats 0.5 -> rank 2
    row = [0.5, np.nan, -np.inf, 0.8]
    assert ranks_of(row, 0) == 2.0


def test_batch_rows_are_independent():
    scores = np.array([[3, 2, 1], [1, 2, 3]], dtype=np.float32)
    ranks = conservative_ranks(scores, np.array([0, 0]))
    np.testing.assert_array_equal(ranks, [1.0, 3.0])


def test_shape_mismatch_and_bad_target_raise():
    scores = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="expected scores"):
        conservative_ranks(scores, np.array([0]))
    with pytest.raises(ValueError, match="n_items"):
        conservative_ranks(scores, np.array([0, 3]))


def test_next_item_positions_yields_every_later_click():
    pairs = list(next_item_positions(np.array([7, 8, 9])))
    assert [(p.tolist(), t) for p, t in pairs] == [
        ([7], 8),
        ([7, 8], 9),
    ]
    assert list(next_item_positions(np.array([7]))) == []
    assert list(next_item_positions(np.array([], np.int64))) == []


def test_rank_metrics_hand_computed():
    m = RankMetrics()  # ks (12, 20)
    m.add(np.array([1.0, 3.0]))
    m.add([15.0, np.inf])
    s = m.summary()
    # @12 hits ranks 1, 3:        HR = 2/4
    #   MRR  = (1 + 1/3) / 4     = 1/3
    #   NDCG = (1/log2 2 + 1/log2 4) / 4 = (1 + 0.5) / 4
    # @20 also hits rank 15:      HR = 3/4
    #   MRR  = (1 + 1/3 + 1/15) / 4 = (21/15) / 4 = 0.35
    #   NDCG = (1 + 0.5 + 1/log2 16) / 4 = 1.75 / 4
    expected = {
        "HR@12": 0.5, "MRR@12": 1 / 3, "NDCG@12": 0.375,
        "HR@20": 0.75, "MRR@20": 0.35, "NDCG@20": 0.4375,
        "n": 4.0,
    }
    assert s.keys() == expected.keys()
    for key, value in expected.items():
        assert s[key] == pytest.approx(value, rel=1e-12), key


def test_rank_metrics_custom_ks_and_empty():
    m = RankMetrics(ks=(1,))
    s = m.summary()
    assert s["n"] == 0.0 and math.isnan(s["HR@1"])
    m.add([1.0, 2.0])
    assert m.summary()["HR@1"] == 0.5
    assert m.summary()["NDCG@1"] == 0.5


def test_rank_metrics_reject_invalid_ranks():
    with pytest.raises(ValueError, match="ranks"):
        RankMetrics().add([0.0])
    with pytest.raises(ValueError, match="ranks"):
        RankMetrics().add([np.nan])
    with pytest.raises(ValueError, match="ks"):
        RankMetrics(ks=())
