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

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray,
                                                      np.ndarray]:
        k = min(k, len(self))
        if k == 0:
            n = len(xq)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        return self.index.search(normalize(xq), k)

    def weights(self, D: np.ndarray, I: np.ndarray) -> np.ndarray:
        """Neighbour weights: sharper than raw cosine, summing to one."""
        w = np.exp((D - 1.0) / self.temperature) * (I >= 0)
        return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)

    def votes(self, D: np.ndarray, I: np.ndarray) -> sp.csr_matrix:
        """(Q, n_items) vote distribution of each query's neighbours."""
        w = self.weights(D, I)
        Q, k = I.shape
        W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(Q), k),
                                        np.maximum(I, 0).ravel())),
                          shape=(Q, len(self)))
        return (W @ self.futures).tocsr()
