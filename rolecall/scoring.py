"""The scoring rule shared by evaluation and serving.

score(item) = (1 - w) * p_model(item) + w * p_lookalike(item)

p_model is a softmax over the item tower's top candidates for the
session state (items outside them get 0); p_lookalike is the vote
distribution of the nearest past session states. Both are distributions,
so w reads as the share of the answer that look-alikes decide, and each
part of an item's score is its explanation.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def blend(cand: np.ndarray, p_model: np.ndarray, vote_items: np.ndarray,
          vote_probs: np.ndarray, weight: float,
          exclude: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Blend one query's parts over the union of their items.

    Returns (items, score, model part, look-alike part), unsorted; the
    parts add up to the score. Items outside both parts score 0 and are
    never returned.
    """
    items = np.concatenate([cand, vote_items])
    model = np.concatenate([(1.0 - weight) * p_model,
                            np.zeros(len(vote_items))])
    votes = np.concatenate([np.zeros(len(cand)), weight * vote_probs])
    ok = items >= 0
    if exclude is not None and len(exclude):
        ok &= ~np.isin(items, exclude)
    items, inv = np.unique(items[ok], return_inverse=True)
    m = np.bincount(inv, weights=model[ok], minlength=len(items))
    v = np.bincount(inv, weights=votes[ok], minlength=len(items))
    return items, m + v, m, v


def rank_of(items: np.ndarray, score: np.ndarray, target: int) -> float:
    """Conservative rank of target; inf when it scored nothing."""
    hit = np.flatnonzero(items == target)
    if not len(hit) or score[hit[0]] <= 0:
        return np.inf
    return float(np.count_nonzero(score >= score[hit[0]]))


def top_k(items: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, best first; ties by item index."""
    k = min(k, len(items))
    order = np.lexsort((items, -score))
    return order[:k]


def diverse(items, groups: np.ndarray, k: int, cap: int,
            counts: dict[int, int], skip=frozenset()
            ) -> tuple[list[int], list[int]]:
    """Walk items (best first) and take up to k of them, at most `cap`
    per group (cap 0: no cap; a group below 0 is never capped), passing
    over those in `skip`. counts (group -> taken) carries over between
    calls. Returns the positions taken and, up to k, the positions
    passed over for the cap, for a caller that must fill k anyway."""
    taken, capped = [], []
    for pos, item in enumerate(items):
        if len(taken) == k:
            break
        item = int(item)
        if item in skip:
            continue
        g = int(groups[item])
        if cap > 0 and g >= 0 and counts.get(g, 0) >= cap:
            if len(capped) < k:
                capped.append(pos)
            continue
        counts[g] = counts.get(g, 0) + 1
        taken.append(pos)
    return taken, capped
