"""Non-neural session baselines: popularity, co-occurrence, rules, kNN.

Every baseline follows one contract: ``fit(sessions, start_ts,
n_items)`` then ``score(prefix)`` -> float32 scores of shape (n_items,),
larger is better, 0 for items the method cannot score. Ties are left
to the metric, which ranks them against the target.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

_DAY_S = 86_400.0


def _check_fit_inputs(
    sessions: list[np.ndarray], start_ts: np.ndarray, n_items: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Cast to int64/float64 and fail on ids outside [0, n_items)."""
    start_ts = np.asarray(start_ts, dtype=np.float64)
    if start_ts.shape != (len(sessions),):
        raise ValueError(
            f"expected one start_ts per session ({len(sessions)}), "
            f"got shape {start_ts.shape}"
        )
    sessions = [np.asarray(s, dtype=np.int64).ravel() for s in sessions]
    for s in sessions:
        if len(s) and (s.min() < 0 or s.max() >= n_items):
            raise ValueError(
                f"item ids must lie in [0, {n_items}), "
                f"found {s.min()}..{s.max()}"
            )
    return sessions, start_ts


def _flatten(
    sessions: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate sessions; return (items, session index per click)."""
    lens = np.fromiter((len(s) for s in sessions), np.int64, len(sessions))
    flat = (
        np.concatenate(sessions) if len(sessions)
        else np.zeros(0, np.int64)
    )
    return flat, np.repeat(np.arange(len(sessions)), lens)


def _binary_matrix(
    sessions: list[np.ndarray], n_items: int
) -> sp.csr_matrix:
    """Session x item matrix holding 1 where the session has the item."""
    items, rows = _flatten(sessions)
    x = sp.csr_matrix(
        (np.ones(len(items), np.float32), (rows, items)),
        shape=(len(sessions), n_items),
    )
    x.sum_duplicates()
    x.data[:] = 1.0  # a repeated click is not a stronger signal here
    return x


class Baseline:
    """Shared input checks; subclasses implement _fit and _score."""

    name: ClassVar[str] = ""
    params_cls: ClassVar[type] = object

    def __init__(self, params: Any = None) -> None:
        self.params = self.params_cls() if params is None else params
        self.n_items = 0

    def fit(
        self,
        sessions: list[np.ndarray],
        start_ts: np.ndarray,
        n_items: int,
    ) -> Baseline:
        """Fit on sessions; equal start_ts keep input order as recency."""
        t0 = time.perf_counter()
        sessions, start_ts = _check_fit_inputs(sessions, start_ts, n_items)
        self.n_items = int(n_items)
        self._fit(sessions, start_ts)
        log.info(
            "fitted %s on %d sessions, %d items in %.2fs", self.name,
            len(sessions), n_items, time.perf_counter() - t0,
        )
        return self

    def score(self, prefix: np.ndarray) -> np.ndarray:
        """Score all items for a prefix of known item ids (may be empty)."""
        prefix = np.asarray(prefix, dtype=np.int64).ravel()
        if len(prefix) and (
            prefix.min() < 0 or prefix.max() >= self.n_items
        ):
            raise ValueError(
                f"prefix ids must lie in [0, {self.n_items}), got {prefix}"
            )
        return self._score(prefix)

    def _fit(self, sessions: list[np.ndarray], start_ts: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, prefix: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class PopularityParams:
    """Popularity has no knobs; kept for a uniform factory."""


class Popularity(Baseline):
    """Clicks per item in the training sessions; ignores the prefix."""

    name = "pop"
    params_cls = PopularityParams

    def _fit(self, sessions: list[np.ndarray], start_ts: np.ndarray) -> None:
        items, _ = _flatten(sessions)
        counts = np.bincount(items, minlength=self.n_items)
        self._counts = counts.astype(np.float32)

    def _score(self, prefix: np.ndarray) -> np.ndarray:
        return self._counts.copy()


@dataclass
class ItemCooccurrenceParams:
    # prefix click j steps before the last one weighs recency_decay ** j;
    # 0.8 was best on average over the H&M and YooChoose validation days
    recency_decay: float = 0.8


class ItemCooccurrence(Baseline):
    """Sessions shared with each prefix item, recent items weighted more.

    Pure counts with a zero diagonal (an item never co-occurs with
    itself) and no popularity tie-breaker: items with equal counts stay
    tied and the conservative metric ranks such ties against the target.
    """

    name = "cooc"
    params_cls = ItemCooccurrenceParams

    def _fit(self, sessions: list[np.ndarray], start_ts: np.ndarray) -> None:
        x = _binary_matrix(sessions, self.n_items)
        c = (x.T @ x).tocsr()
        c = c - sp.diags(c.diagonal())  # a structural change setdiag warns on
        c.eliminate_zeros()
        self._cooc = c.astype(np.float32)

    def _score(self, prefix: np.ndarray) -> np.ndarray:
        if not len(prefix):
            return np.zeros(self.n_items, np.float32)
        steps_back = np.arange(len(prefix) - 1, -1, -1)
        w = self.params.recency_decay ** steps_back
        # duplicate rows are fine: a re-clicked item simply counts twice
        scores = self._cooc[prefix].T @ w.astype(np.float32)
        return np.asarray(scores, np.float32).ravel()


@dataclass
class SequentialRulesParams:
    window: int = 10  # rule a->b only if b is at most this many clicks later
    # rules kept per antecedent, 0 keeps all; pruning cost accuracy on
    # both validation sets and all rules still score in ~0.1 ms
    prune: int = 0
    # prefix clicks used, the j-th last weighs 1/j; the classic SR uses
    # only the last click, 3 was better on both validation sets
    n_last: int = 3


class SequentialRules(Baseline):
    """Rules a->b weighted 1/distance for b following a in a session."""

    name = "sr"
    params_cls = SequentialRulesParams

    def _fit(self, sessions: list[np.ndarray], start_ts: np.ndarray) -> None:
        items, rows = _flatten(sessions)
        src, dst, wts = [], [], []
        for d in range(1, min(self.params.window, len(rows) - 1) + 1):
            same = rows[:-d] == rows[d:]
            if not same.any():
                break  # no session is longer than d clicks
            src.append(items[:-d][same])
            dst.append(items[d:][same])
            wts.append(np.full(int(np.sum(same)), 1.0 / d, np.float32))
        n = self.n_items
        if src:
            rules = sp.csr_matrix(
                (np.concatenate(wts),
                 (np.concatenate(src), np.concatenate(dst))),
                shape=(n, n),
            )
        else:
            rules = sp.csr_matrix((n, n), dtype=np.float32)
        rules.sum_duplicates()
        if self.params.prune > 0:
            rules = _keep_top_per_row(rules, self.params.prune)
        self._rules = rules

    def _score(self, prefix: np.ndarray) -> np.ndarray:
        last = prefix[::-1][: self.params.n_last]
        if not len(last):
            return np.zeros(self.n_items, np.float32)
        w = (1.0 / np.arange(1, len(last) + 1)).astype(np.float32)
        scores = self._rules[last].T @ w
        return np.asarray(scores, np.float32).ravel()


def _keep_top_per_row(m: sp.csr_matrix, top: int) -> sp.csr_matrix:
    """Zero all but the `top` largest entries of each row."""
    m = m.tocsr(copy=True)
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo > top:
            row = m.data[lo:hi]
            # ties at the cut keep an arbitrary subset, as any pruning must
            drop = np.argpartition(-row, top)[top:]
            row[drop] = 0.0
    m.eliminate_zeros()
    return m


class _NeighbourIndex:
    """Sessions in recency order plus an item -> sessions index."""

    def __init__(
        self,
        sessions: list[np.ndarray],
        start_ts: np.ndarray,
        n_items: int,
    ) -> None:
        order = np.argsort(start_ts, kind="stable")
        sessions = [sessions[i] for i in order]
        self.ts = start_ts[order]
        # row i is the i-th oldest session, so a larger row is more recent
        self.x = _binary_matrix(sessions, n_items)
        self.item_sessions = self.x.T.tocsr()
        self.item_sessions.sort_indices()
        self.lens = np.diff(self.x.indptr)  # distinct items per session
        self.flat, _ = _flatten(sessions)
        self.seq_lens = np.fromiter(
            (len(s) for s in sessions), np.int64, len(sessions)
        )
        self.seq_starts = np.cumsum(self.seq_lens) - self.seq_lens
        df = np.diff(self.item_sessions.indptr).astype(np.float64)
        with np.errstate(divide="ignore"):
            idf = np.log(max(len(sessions), 1) / df)
        self.idf = np.where(df > 0, idf, 0.0).astype(np.float32)

    def candidates(self, items: np.ndarray, sample_size: int) -> np.ndarray:
        """The `sample_size` most recent sessions holding any of items."""
        ptr, idx = self.item_sessions.indptr, self.item_sessions.indices
        # the newest sample_size of the union lie within the newest
        # sample_size of each item's list, so longer tails are skipped
        tails = [
            idx[max(ptr[i], ptr[i + 1] - sample_size): ptr[i + 1]]
            for i in items
        ]
        cand = np.unique(np.concatenate(tails))
        return cand[-sample_size:].astype(np.int64)

    def top_k(self, cand: np.ndarray, sim: np.ndarray, k: int) -> np.ndarray:
        """Positions in cand of the k largest sim, ties to the newest."""
        newest_first = np.arange(len(cand) - 1, -1, -1)
        order = np.argsort(-sim[newest_first], kind="stable")
        return newest_first[order[:k]]


def _last_weights(
    prefix: np.ndarray, weight_of_step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct prefix items and the weight of their latest click."""
    rev = prefix[::-1]
    items, first_in_rev = np.unique(rev, return_index=True)
    return items, weight_of_step[first_in_rev]


@dataclass
class VSkNNParams:
    # neighbour sessions kept; 200 is a compromise: H&M baskets gain up
    # to k=1000, YooChoose clicks lose MRR beyond 100
    k: int = 200
    sample_size: int = 1000  # most recent candidate sessions considered
    # weight of the prefix click j steps before the last one (j = 0..n-1):
    # linear (n - j) / n, div 1 / (j + 1), same 1
    weighting: Literal["linear", "div", "same"] = "linear"
    idf: bool = True  # better on both validation sets

    def __post_init__(self) -> None:
        if self.weighting not in ("linear", "div", "same"):
            raise ValueError(f"unknown weighting {self.weighting!r}")


class VSkNN(Baseline):
    """Vector-multiplication session kNN (Ludewig & Jannach 2018)."""

    name = "vsknn"
    params_cls = VSkNNParams

    def _fit(self, sessions: list[np.ndarray], start_ts: np.ndarray) -> None:
        self._index = _NeighbourIndex(sessions, start_ts, self.n_items)

    def _position_weights(self, n: int) -> np.ndarray:
        j = np.arange(n, dtype=np.float64)
        kind = self.params.weighting
        if kind == "linear":
            return (n - j) / n
        if kind == "div":
            return 1.0 / (j + 1.0)
        return np.ones(n)  # "same"; other names fail in VSkNNParams

    def _score(self, prefix: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_items, np.float32)
        if not len(prefix):
            return out
        ix, p = self._index, self.params
        items, w = _last_weights(
            prefix, self._position_weights(len(prefix))
        )
        cand = ix.candidates(items, p.sample_size)
        q = np.zeros(self.n_items, np.float32)
        q[items] = w
        sim = ix.x[cand] @ q
        keep = ix.top_k(cand, sim, p.k)
        out[:] = ix.x[cand[keep]].T @ sim[keep]
        if p.idf:
            out *= ix.idf
        return out


@dataclass
class VSTANParams:
    k: int = 200  # as VSkNN
    sample_size: int = 1000
    # prefix click j steps before the last weighs exp(-j / lambda_spw);
    # YooChoose clicks prefer 2, unordered H&M baskets no decay at all
    lambda_spw: float = 4.0
    # neighbour started d days before the newest training session
    # weighs exp(-d / lambda_snh)
    lambda_snh: float = 100.0
    # neighbour item m clicks from the shared item weighs exp(-m / lambda)
    lambda_inh: float = 4.0
    similarity: Literal["dot", "cosine"] = "dot"  # cosine lost on both
    idf: bool = True

    def __post_init__(self) -> None:
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"unknown similarity {self.similarity!r}")


class VSTAN(Baseline):
    """Sequence- and time-aware kNN (STAN, extended as V-STAN).

    Recency is measured from the newest training session rather than
    from the query, which score() does not receive; for queries that
    come after training this multiplies every neighbour by the same
    factor, so rankings do not change.
    """

    name = "vstan"
    params_cls = VSTANParams

    def _fit(self, sessions: list[np.ndarray], start_ts: np.ndarray) -> None:
        self._index = ix = _NeighbourIndex(sessions, start_ts, self.n_items)
        now = ix.ts[-1] if len(ix.ts) else 0.0
        age_days = (now - ix.ts) / _DAY_S
        self._recency = np.exp(-age_days / self.params.lambda_snh)

    def _score(self, prefix: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_items, np.float32)
        if not len(prefix):
            return out
        ix, p = self._index, self.params
        steps = np.arange(len(prefix), dtype=np.float64)
        items, w = _last_weights(prefix, np.exp(-steps / p.lambda_spw))
        cand = ix.candidates(items, p.sample_size)
        q = np.zeros(self.n_items, np.float32)
        q[items] = w
        sim = ix.x[cand] @ q
        if p.similarity == "cosine":
            sim = sim / np.sqrt(len(items) * ix.lens[cand])
        sim = sim * self._recency[cand]
        keep = ix.top_k(cand, sim, p.k)
        nbrs, sim = cand[keep], sim[keep]
        if not len(nbrs):
            return out
        seg, pos, seq = self._gather(nbrs)
        w3 = self._item_weights(prefix, seg, pos, seq)
        contrib = sim[seg] * w3
        # an item clicked twice in one neighbour counts once, at its best
        order = np.lexsort((-contrib, seq, seg))
        seg, seq, contrib = seg[order], seq[order], contrib[order]
        first = np.ones(len(seq), bool)
        first[1:] = (seg[1:] != seg[:-1]) | (seq[1:] != seq[:-1])
        out[:] = np.bincount(
            seq[first], weights=contrib[first], minlength=self.n_items
        )
        if p.idf:
            out *= ix.idf
        return out

    def _gather(
        self, nbrs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flatten neighbour sequences to (neighbour, position, item)."""
        ix = self._index
        lens = ix.seq_lens[nbrs]
        seg = np.repeat(np.arange(len(nbrs)), lens)
        offsets = np.cumsum(lens) - lens
        pos = np.arange(int(lens.sum())) - np.repeat(offsets, lens)
        seq = ix.flat[np.repeat(ix.seq_starts[nbrs], lens) + pos]
        return seg, pos, seq

    def _item_weights(
        self,
        prefix: np.ndarray,
        seg: np.ndarray,
        pos: np.ndarray,
        seq: np.ndarray,
    ) -> np.ndarray:
        """exp(-distance to the newest prefix item each neighbour has)."""
        items, first_in_rev = np.unique(prefix[::-1], return_index=True)
        last_pos = len(prefix) - 1 - first_in_rev
        at = np.minimum(np.searchsorted(items, seq), len(items) - 1)
        rank = np.where(items[at] == seq, last_pos[at], -1)
        base = int(pos.max()) + 1
        # newest shared prefix item first, then its latest position in n
        key = np.where(rank >= 0, rank * base + pos, -1)
        starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        match = np.maximum.reduceat(key, starts) % base
        dist = np.abs(pos - match[seg])
        return np.exp(-dist / self.params.lambda_inh)


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls
    for cls in (Popularity, ItemCooccurrence, SequentialRules, VSkNN, VSTAN)
}


def make_baseline(name: str, **params: Any) -> Baseline:
    """Build a baseline by registry name; unknown parameters raise."""
    if name not in BASELINES:
        raise ValueError(
            f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}"
        )
    cls = BASELINES[name]
    return cls(cls.params_cls(**params))
