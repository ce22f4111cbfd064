"""The look-alike bank: past session states and what each went on to buy.

A state is a session after one of its events; its "future" is the items
that session took afterwards, the next one weighted most. Votes of the
nearest states form a distribution over items: "shoppers like you went
on to buy these".
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp

from rolecall.config import IndexConfig
from rolecall.index import build_index


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows: look-alikes are compared by direction (cosine)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def futures_matrix(sessions: list[np.ndarray], state_session: np.ndarray,
                   state_position: np.ndarray, n_items: int,
                   decay: float) -> sp.csr_matrix:
    """(n_states, n_items): each row a distribution over later items."""
    rows, cols, vals = [], [], []
    for r, (s, t) in enumerate(zip(state_session, state_position)):
        later = sessions[s][t + 1:]
        w = decay ** np.arange(len(later), dtype=np.float64)
        rows.append(np.full(len(later), r))
        cols.append(later)
        vals.append(w / w.sum())
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                              np.concatenate(cols))),
                      shape=(len(state_session), n_items))
    m.sum_duplicates()  # an item bought twice later votes once, summed
    return m


@dataclass
class Votes:
    """One query's look-alike votes: a distribution over items, and the
    (state, item) pairs behind it, nearest state first, so that an
    answer can name who voted for each item without another lookup."""

    indices: np.ndarray  # items that got votes, ascending
    data: np.ndarray  # their share of the votes
    pair_states: np.ndarray  # the voting state of each pair
    pair_items: np.ndarray  # the item it voted for

    @classmethod
    def none(cls) -> Votes:
        empty = np.zeros(0, np.int64)
        return cls(empty, np.zeros(0), empty, empty)

    def voters(self, item: int) -> np.ndarray:
        return self.pair_states[self.pair_items == item]

    def voters_of(self, items: np.ndarray, first: int
                  ) -> tuple[list[int], list[list[int]]]:
        """For each item: how many states voted for it, and the first
        `first` of them, nearest first (as voters() gives them), from
        one sort for all items."""
        order = np.argsort(self.pair_items, kind="stable")
        by_item = self.pair_items[order]
        lo = np.searchsorted(by_item, items, "left").tolist()
        hi = np.searchsorted(by_item, items, "right").tolist()
        states = self.pair_states[order]
        return ([b - a for a, b in zip(lo, hi)],
                [states[a:min(b, a + first)].tolist()
                 for a, b in zip(lo, hi)])


@dataclass
class Bank:
    vectors: np.ndarray  # (n_states, dim) unit rows
    futures: sp.csr_matrix  # (n_states, n_items)
    session_ids: list[str]  # per state, for explanations
    temperature: float = 0.1

    def __post_init__(self):
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        if len(self.vectors):
            self.index.add(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, vectors: np.ndarray, futures_rows: sp.spmatrix,
            session_ids: list[str]) -> None:
        """Append states (searchable at once) without a retrain.

        Works for any faiss index that takes `add` (flat, HNSW). Not
        safe beside a search in another thread: callers add on the
        thread that searches.
        """
        vectors = normalize(vectors)
        n = len(vectors)
        if futures_rows.shape != (n, self.futures.shape[1]) or len(
                session_ids) != n:
            raise ValueError(
                f"expected {n} futures rows of {self.futures.shape[1]} "
                f"items and {n} session ids, found "
                f"{futures_rows.shape} and {len(session_ids)}")
        if n == 0:
            return
        self.index.add(vectors)
        self.vectors = np.concatenate([self.vectors, vectors])
        # Copies the matrix: fine for the trickle of finished sessions,
        # not for bulk loads (those belong in a retrain).
        self.futures = sp.vstack([self.futures, futures_rows.tocsr()],
                                 format="csr")
        self.session_ids = [*self.session_ids, *session_ids]

    def reindex(self, kind: str, params: IndexConfig, k: int = 0,
                cache_dir: str | None = None) -> None:
        """Search another index kind; evaluation keeps the exact one."""
        self.index = build_index(self.vectors, kind, params, k=k,
                                 cache_dir=cache_dir)

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray,
                                                      np.ndarray]:
        k = min(k, len(self))
        if k == 0:
            n = len(xq)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        return self.index.search(normalize(xq), k)

    def forget(self, session_ids: set[str]) -> int:
        """Stop the states of these sessions from voting or being named.

        FAISS indexes cannot drop rows cheaply, so the rows stay but
        their futures become empty and their ids anonymous; the next
        bundle leaves them out for good.
        """
        rows = [i for i, s in enumerate(self.session_ids)
                if s in session_ids]
        if not rows:
            return 0
        keep = np.ones(len(self.session_ids))
        keep[rows] = 0.0
        self.futures = (sp.diags(keep) @ self.futures).tocsr()
        self.futures.eliminate_zeros()
        for i in rows:
            self.session_ids[i] = "forgotten"
        return len(rows)

    def weights(self, D: np.ndarray, I: np.ndarray) -> np.ndarray:
        """Neighbour weights: sharper than raw cosine, summing to one."""
        w = np.exp((D - 1.0) / self.temperature) * (I >= 0)
        return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)

    def votes_of(self, D: np.ndarray, I: np.ndarray) -> Votes:
        """`votes` for one query (D and I of shape (k,)), straight from
        the neighbours' rows of the futures matrix: per click this is a
        few numpy calls where building sparse matrices took ~0.5 ms."""
        w = self.weights(D[None, :], I[None, :])[0]
        ok = I >= 0
        states, w = I[ok], w[ok]
        f = self.futures
        starts = f.indptr[states]
        lengths = f.indptr[states + 1] - starts
        # Positions of every stored entry of those rows, row by row.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        take = offsets + np.arange(int(lengths.sum()))
        pair_items = f.indices[take].astype(np.int64)
        values = f.data[take] * np.repeat(w, lengths)
        items, inv = np.unique(pair_items, return_inverse=True)
        shares = np.bincount(inv, weights=values, minlength=len(items))
        return Votes(items, shares, np.repeat(states, lengths), pair_items)

    def votes(self, D: np.ndarray, I: np.ndarray) -> sp.csr_matrix:
        """(Q, n_items) vote distribution of each query's neighbours."""
        w = self.weights(D, I)
        Q, k = I.shape
        W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(Q), k),
                                        np.maximum(I, 0).ravel())),
                          shape=(Q, len(self)))
        return (W @ self.futures).tocsr()
