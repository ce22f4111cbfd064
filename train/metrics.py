"""Ranking metrics for next-item evaluation, with conservative ties."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)


def conservative_ranks(
    scores: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Rank each target among its row; every tie counts against it.

    A target outside the row (index < 0) or scored -inf/NaN gets an
    infinite rank, so it never counts as a hit.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(
            f"expected scores (Q, N) and targets (Q,), got "
            f"{scores.shape} and {targets.shape}"
        )
    n_items = scores.shape[1]
    if np.any(targets >= n_items):
        raise ValueError(f"target index >= n_items={n_items}")
    valid = targets >= 0
    rows = np.arange(len(targets))
    target_scores = np.full(len(targets), np.nan, dtype=scores.dtype)
    target_scores[valid] = scores[rows[valid], targets[valid]]
    # NaN elsewhere in a row compares False, so it never outranks the
    # target; subtract 1 because the target always ties with itself.
    with np.errstate(invalid="ignore"):
        n_ge = (scores >= target_scores[:, None]).sum(axis=1)
    ranks = n_ge.astype(np.float64)  # == 1 + number of other items >=
    lost = ~valid | np.isnan(target_scores) | np.isneginf(target_scores)
    ranks[lost] = np.inf
    return ranks


def next_item_positions(
    session: Sequence[int] | np.ndarray,
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (prefix, target) for every target after the first click."""
    session = np.asarray(session, dtype=np.int64)
    for t in range(1, len(session)):
        yield session[:t], int(session[t])


class RankMetrics:
    """Running HR@K, MRR@K and NDCG@K over all added positions."""

    def __init__(self, ks: Sequence[int] = (12, 20)) -> None:
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        self.ks = tuple(int(k) for k in ks)
        self._n = 0
        self._hr = dict.fromkeys(self.ks, 0.0)
        self._mrr = dict.fromkeys(self.ks, 0.0)
        self._ndcg = dict.fromkeys(self.ks, 0.0)

    def add(self, ranks: np.ndarray | Sequence[float]) -> None:
        """Add 1-based ranks; np.inf stands for a miss."""
        ranks = np.asarray(ranks, dtype=np.float64).ravel()
        if np.any(np.isnan(ranks)) or np.any(ranks < 1):
            raise ValueError("ranks must be >= 1 or inf, never NaN")
        self._n += len(ranks)
        for k in self.ks:
            hit = ranks <= k
            r = ranks[hit]
            self._hr[k] += float(hit.sum())
            self._mrr[k] += float((1.0 / r).sum())
            self._ndcg[k] += float((1.0 / np.log2(r + 1.0)).sum())

    def summary(self) -> dict[str, float]:
        """Means over positions; NaN for every metric while n == 0."""
        denom = self._n if self._n else np.nan
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"HR@{k}"] = self._hr[k] / denom
            out[f"MRR@{k}"] = self._mrr[k] / denom
            out[f"NDCG@{k}"] = self._ndcg[k] / denom
        out["n"] = float(self._n)
        return out
