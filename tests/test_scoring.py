"""The blend of model and look-alikes, and retrieval against exact search."""

import faiss
import numpy as np
import scipy.sparse as sp

from rolecall.lookalikes import Bank, futures_matrix, normalize
from rolecall.scoring import blend, rank_of, softmax, top_k


def test_blend_parts_add_up_and_exclusion_holds():
    cand = np.array([3, 1, 7])
    p = np.array([0.5, 0.3, 0.2])
    items, score, m, v = blend(cand, p, np.array([1, 9]),
                               np.array([0.75, 0.25]), 0.4,
                               exclude=np.array([7]))
    assert list(items) == [1, 3, 9]
    # item 1: 0.6 * 0.3 + 0.4 * 0.75 = 0.48; item 3: 0.6 * 0.5 = 0.30;
    # item 9: 0.4 * 0.25 = 0.10; item 7 was excluded.
    np.testing.assert_allclose(score, [0.48, 0.30, 0.10])
    np.testing.assert_allclose(m + v, score)


def test_rank_is_conservative_and_zero_score_is_a_miss():
    items = np.array([10, 11, 12, 13])
    score = np.array([0.2, 0.5, 0.2, 0.1])
    # 12 ties with 10 and is ranked behind it: 11, 10, 12 -> rank 3.
    assert rank_of(items, score, 12) == 3
    assert rank_of(items, score, 11) == 1
    assert rank_of(items, score, 99) == np.inf
    assert rank_of(items, np.array([0.0, 1, 1, 1]), 10) == np.inf


def test_top_k_orders_by_score_then_item():
    items = np.array([5, 2, 9, 1])
    score = np.array([0.1, 0.4, 0.4, 0.05])
    assert list(items[top_k(items, score, 3)]) == [2, 9, 5]
    assert len(top_k(items, score, 10)) == 4


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]))
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0], atol=1e-12)


def test_faiss_inner_product_search_matches_exact_search():
    rng = np.random.default_rng(0)
    xb = rng.normal(size=(5000, 33)).astype(np.float32)
    xq = rng.normal(size=(50, 33)).astype(np.float32)
    index = faiss.IndexFlatIP(33)
    index.add(xb)
    D, I = index.search(xq, 20)
    exact = np.argsort(-(xq @ xb.T), axis=1)[:, :20]
    assert (I == exact).mean() > 0.999  # float ties may swap
    np.testing.assert_allclose(D[:, 0], (xq @ xb.T).max(1), rtol=1e-5)


def test_hnsw_recall_against_exact_search():
    rng = np.random.default_rng(1)
    xb = normalize(rng.normal(size=(5000, 16)))
    xq = normalize(rng.normal(size=(100, 16)))
    hnsw = faiss.IndexHNSWFlat(16, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 128
    hnsw.add(xb)
    _, I = hnsw.search(xq, 20)
    exact = np.argsort(-(xq @ xb.T), axis=1)[:, :20]
    recall = np.mean([len(set(a) & set(b)) / 20
                      for a, b in zip(I, exact)])
    assert recall >= 0.95


def test_futures_weight_the_next_item_most():
    sessions = [np.array([0, 1, 2, 3])]
    f = futures_matrix(sessions, np.array([0, 0]), np.array([0, 2]), 5,
                       decay=0.5).toarray()
    # after item 0: 1, 2, 3 weighted 1, .5, .25 then normalised by 1.75
    np.testing.assert_allclose(f[0], [0, 1 / 1.75, .5 / 1.75, .25 / 1.75, 0])
    np.testing.assert_allclose(f[1], [0, 0, 0, 1, 0])


def test_bank_votes_follow_the_nearest_state():
    vectors = normalize(np.array([[1.0, 0.0], [0.0, 1.0]]))
    futures = sp.csr_matrix(np.array([[0, 1.0, 0], [0, 0, 1.0]]))
    bank = Bank(vectors, futures, ["a", "b"], temperature=0.05)
    D, I = bank.search(np.array([[0.9, 0.1]], np.float32), 2)
    votes = bank.votes(D, I).toarray()[0]
    np.testing.assert_allclose(votes.sum(), 1.0, rtol=1e-6)
    assert votes[1] > 0.99 and votes[0] == 0


def test_one_query_votes_match_the_sparse_product_and_name_voters():
    rng = np.random.default_rng(4)
    n_states, n_items = 300, 50
    vectors = normalize(rng.standard_normal((n_states, 8)))
    dense = (rng.random((n_states, n_items)) < 0.05) * rng.random(
        (n_states, n_items))
    dense[7] = 0.0  # a state with nothing after it (or forgotten)
    futures = sp.csr_matrix(dense)
    bank = Bank(vectors, futures, [f"s{i}" for i in range(n_states)])
    D, I = bank.search(rng.standard_normal((1, 8)).astype(np.float32), 40)
    I[0, -1] = -1  # a missing neighbour, as approximate indexes give
    expected = bank.votes(D, I).toarray()[0]
    votes = bank.votes_of(D[0], I[0])
    got = np.zeros(n_items)
    got[votes.indices] = votes.data
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert list(votes.indices) == sorted(set(votes.indices))
    item = int(votes.indices[np.argmax(votes.data)])
    neighbours = [s for s in I[0] if s >= 0]
    assert list(votes.voters(item)) == [s for s in neighbours
                                        if dense[s, item] > 0]
    asked = np.array([item, *votes.indices[:5], n_items + 1])
    counts, firsts = votes.voters_of(asked, 3)  # all at once, as served
    for it, n, first in zip(asked, counts, firsts):
        each = list(votes.voters(int(it)))
        assert (n, first) == (len(each), each[:3])
    assert counts[-1] == 0  # an item nobody voted for
    empty = bank.votes_of(D[0, :0], I[0, :0])
    assert len(empty.indices) == len(empty.voters(item)) == 0
