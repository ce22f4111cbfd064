"""Batch encoding with a trained model: catalogue items and session states.

Used by validation, evaluation and export alike, so every stage scores
with exactly the same tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from rolecall.model import TwoTower


@dataclass
class ItemTensors:
    """Per catalogue item: its id row (0 = no id of its own), features."""

    id_rows: torch.Tensor  # (n_items,)
    features: torch.Tensor  # (n_items, F)

    def to(self, device) -> ItemTensors:
        return ItemTensors(self.id_rows.to(device),
                           self.features.to(device))


def pad(seqs: list[np.ndarray], value: int = 0) -> np.ndarray:
    L = max(len(s) for s in seqs)
    out = np.full((len(seqs), L), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def batch_inputs(items: list[np.ndarray], types: list[np.ndarray],
                 tensors: ItemTensors, device) -> tuple:
    idx = torch.from_numpy(pad(items)).to(device)
    typ = torch.from_numpy(pad(types)).to(device)
    lengths = torch.tensor([len(s) for s in items], device=device)
    mask = (torch.arange(idx.shape[1], device=device)[None, :]
            < lengths[:, None]).float()
    return (tensors.id_rows[idx], tensors.features[idx], typ, mask)


@torch.inference_mode()
def item_vectors(model: TwoTower, tensors: ItemTensors,
                 batch: int = 65536) -> np.ndarray:
    """(n_items, dim + 1) float32 vectors for the whole catalogue."""
    model.eval()
    parts = [model.item(tensors.id_rows[i:i + batch],
                        tensors.features[i:i + batch])
             for i in range(0, len(tensors.id_rows), batch)]
    return torch.cat(parts).float().cpu().numpy()


@dataclass
class States:
    """Session states after every event but the last of each session."""

    vectors: np.ndarray  # (P, dim + 1)
    targets: np.ndarray  # (P,) the next item
    session: np.ndarray  # (P,) index into the session set
    position: np.ndarray  # (P,) index of the last event in the prefix


@torch.inference_mode()
def session_states(model: TwoTower, items: list[np.ndarray],
                   types: list[np.ndarray], tensors: ItemTensors,
                   device, batch: int = 512) -> States:
    model.eval()
    out = {k: [] for k in ("vectors", "targets", "session", "position")}
    for start, chunk in _chunks(items, batch):
        ids, feats, typ, mask = batch_inputs(
            chunk, types[start:start + len(chunk)], tensors, device)
        states = model.encode_sessions(ids, feats, typ, mask)
        for b, seq in enumerate(chunk):
            n = len(seq) - 1
            if n <= 0:
                continue
            out["vectors"].append(states[b, :n].float().cpu().numpy())
            out["targets"].append(seq[1:])
            out["session"].append(np.full(n, start + b))
            out["position"].append(np.arange(n))
    if not out["vectors"]:
        dim = model.shape.dim + 1
        return States(np.zeros((0, dim), np.float32),
                      *(np.zeros(0, np.int64) for _ in range(3)))
    return States(*(np.concatenate(out[k]) for k in
                    ("vectors", "targets", "session", "position")))


def _chunks(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]
