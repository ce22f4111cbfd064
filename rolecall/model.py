"""The two towers. Both wings import this; it holds no training loop.

Scores are dot products of a session state [u, 1] with an item vector
[v, b]: the last coordinate carries a per-item bias (how likely an item
is at all), so exact inner-product search in FAISS ranks by the full
score without a second pass.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class TowerShape:
    n_ids: int  # id rows; row 0 stands for any item without its own id
    field_sizes: list[int]
    n_event_types: int
    dim: int = 64
    dropout: float = 0.1
    recency_init: float = 0.6

    def as_dict(self) -> dict:
        return asdict(self)


class ItemTower(nn.Module):
    """Item id plus attributes -> [v, b] of size dim + 1."""

    def __init__(self, shape: TowerShape):
        super().__init__()
        d = shape.dim
        self.ids = nn.Embedding(shape.n_ids, d)
        self.id_bias = nn.Embedding(shape.n_ids, 1)
        self.fields = nn.ModuleList(
            nn.Embedding(n, d) for n in shape.field_sizes)
        self.mlp = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(),
            nn.Dropout(shape.dropout), nn.Linear(2 * d, d))
        self.bias = nn.Linear(d, 1)
        nn.init.normal_(self.ids.weight, std=0.05)
        nn.init.zeros_(self.id_bias.weight)
        for emb in self.fields:
            nn.init.normal_(emb.weight, std=0.05)

    def forward(self, ids: torch.Tensor,
                features: torch.Tensor) -> torch.Tensor:
        x = self.ids(ids)  # (N, d)
        for j, emb in enumerate(self.fields):
            x = x + emb(features[:, j])
        v = x + self.mlp(x)
        b = self.bias(x) + self.id_bias(ids)  # (N, 1)
        return torch.cat([v, b], dim=-1)


class SessionTower(nn.Module):
    """Ordered events -> a state [u, 1] after every event.

    A GRU reads the events in order; beside it, an exponentially decayed
    mean gives the most recent events the most weight, with the decay
    learned.
    """

    def __init__(self, shape: TowerShape):
        super().__init__()
        d = shape.dim
        self.types = nn.Embedding(shape.n_event_types, d)
        self.gru = nn.GRU(d, d, batch_first=True)
        p = shape.recency_init
        self.decay_logit = nn.Parameter(torch.tensor(math.log(p / (1 - p))))
        self.out = nn.Sequential(
            nn.Dropout(shape.dropout), nn.Linear(2 * d, d))
        nn.init.normal_(self.types.weight, std=0.05)

    def forward(self, item_vecs: torch.Tensor, types: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """item_vecs (B, L, d), types and mask (B, L) -> (B, L, d + 1)."""
        x = (item_vecs + self.types(types)) * mask.unsqueeze(-1)
        h, _ = self.gru(x)
        r = self._recency_mean(x, mask)
        u = self.out(torch.cat([h, r], dim=-1))
        return torch.cat([u, torch.ones_like(u[..., :1])], dim=-1)

    def last(self, item_vecs: torch.Tensor,
             types: torch.Tensor) -> torch.Tensor:
        """The state after the last event of one unpadded session:
        item_vecs (L, d), types (L,) -> (d + 1,). Equal to forward's
        last state, without the states before it (serving asks one
        per click, and the (L, L) recency weights are its costliest
        part)."""
        x = item_vecs + self.types(types)
        _, h = self.gru(x.unsqueeze(0))  # h: (1, 1, d)
        L = x.shape[0]
        age = torch.arange(L - 1, -1, -1, device=x.device, dtype=x.dtype)
        w = torch.exp(age * nn.functional.logsigmoid(self.decay_logit))
        r = (w / w.sum()) @ x
        u = self.out(torch.cat([h[0, 0], r]))
        return torch.cat([u, torch.ones_like(u[:1])])

    def _recency_mean(self, x: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        pos = torch.arange(L, device=x.device, dtype=x.dtype)
        age = pos.view(L, 1) - pos.view(1, L)  # age[t, i] = t - i
        log_decay = nn.functional.logsigmoid(self.decay_logit)
        w = torch.where(age >= 0, torch.exp(age.clamp(min=0) * log_decay),
                        torch.zeros_like(age))  # (L, L), causal
        w = w.unsqueeze(0) * mask.unsqueeze(1)  # (B, L, L)
        w = w / w.sum(-1, keepdim=True).clamp(min=1e-6)
        return w @ x


class LastState:
    """SessionTower.last in numpy, for serving one click on a CPU.

    Per click, torch spends more time dispatching its dozen small ops
    than computing them (~0.4 ms for a session of a few events); these
    numpy calls take a fraction of that. The GRU's hidden state after
    each encoded sequence is kept (least recently used first out), so
    a click that extends the last encoded sequence by one event costs
    one GRU step, not one per event. Keys are the events themselves,
    so nothing needs invalidating: item rows are only ever appended.
    An entry is about 0.6 KiB (a 64-float state and the events' bytes);
    a session longer than the tower's window slides it and so misses.
    Equal to SessionTower.last up to float rounding (tested).
    """

    def __init__(self, tower: SessionTower, cache_size: int = 50_000):
        def np32(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy().copy()
        gru, out = tower.gru, tower.out[-1]
        self.types = np32(tower.types.weight)
        self.w_ih, self.b_ih = np32(gru.weight_ih_l0).T, np32(gru.bias_ih_l0)
        self.w_hh, self.b_hh = np32(gru.weight_hh_l0).T, np32(gru.bias_hh_l0)
        self.w_out, self.b_out = np32(out.weight).T, np32(out.bias)
        self.decay = math.exp(float(
            nn.functional.logsigmoid(tower.decay_logit.detach())))
        self.d = self.types.shape[1]
        self.cache_size = cache_size
        self._hidden: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __call__(self, item_vecs: np.ndarray, items: list[int],
                 types: list[int]) -> np.ndarray:
        """State [u, 1] after the last of the events: items index rows
        of item_vecs (n_items, d), types index event types."""
        x = item_vecs[items] + self.types[types]  # (L, d)
        L, d = x.shape
        # Compact keys (~5 bytes an event): rows as int32, types as int8.
        key = (np.asarray(items, np.int32).tobytes(),
               np.asarray(types, np.int8).tobytes())
        start, h = self._resume(key, L)
        if start < L:
            gi = x[start:] @ self.w_ih + self.b_ih  # (L - start, 3d)
            for g in gi:
                gh = h @ self.w_hh + self.b_hh
                # sigmoid(a) = (1 + tanh(a / 2)) / 2, without overflow
                rz = 0.5 + 0.5 * np.tanh(0.5 * (g[:2 * d] + gh[:2 * d]))
                n = np.tanh(g[2 * d:] + rz[:d] * gh[2 * d:])
                h = n + rz[d:] * (h - n)
            self._remember(key, h)
        w = self.decay ** np.arange(L - 1, -1, -1, dtype=np.float32)
        r = (w / w.sum()) @ x
        u = np.concatenate([h, r]) @ self.w_out + self.b_out
        return np.append(u, np.float32(1.0)).astype(np.float32)

    def _resume(self, key: tuple, L: int) -> tuple[int, np.ndarray]:
        """Where to start: the hidden state after these very events, or
        after all but the last, or nothing (step 0, zeros)."""
        h = self._hidden.get(key)
        if h is not None:
            self._hidden.move_to_end(key)
            return L, h
        h = self._hidden.get((key[0][:-4], key[1][:-1])) if L > 1 else None
        if h is not None:
            return L - 1, h
        return 0, np.zeros(self.d, np.float32)

    def _remember(self, key: tuple, h: np.ndarray) -> None:
        self._hidden[key] = h
        if len(self._hidden) > self.cache_size:
            self._hidden.popitem(last=False)


class TwoTower(nn.Module):
    def __init__(self, shape: TowerShape):
        super().__init__()
        self.shape = shape
        self.item = ItemTower(shape)
        self.session = SessionTower(shape)

    def encode_sessions(self, ids: torch.Tensor, features: torch.Tensor,
                        types: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        """Padded sessions (B, L) of id rows and (B, L, F) features."""
        B, L = ids.shape
        flat = self.item(ids.reshape(-1),
                         features.reshape(B * L, -1))
        vecs = flat[:, :-1].reshape(B, L, -1)
        return self.session(vecs, types, mask)


def build(shape: TowerShape) -> TwoTower:
    return TwoTower(shape)
