"""Model-only ranks over the whole catalogue, for epoch selection."""

from __future__ import annotations

import numpy as np
import torch

from rolecall.model import TwoTower
from train.encode import ItemTensors, item_vectors, session_states
from train.metrics import conservative_ranks


def model_ranks(model: TwoTower, sessions, tensors: ItemTensors, device,
                chunk: int = 512) -> np.ndarray:
    """Rank of each next item under the model's raw scores."""
    xb = torch.from_numpy(item_vectors(model, tensors))
    st = session_states(model, sessions.items, sessions.types, tensors,
                        device)
    ranks = []
    for i in range(0, len(st.targets), chunk):
        xq = torch.from_numpy(st.vectors[i:i + chunk])
        scores = (xq @ xb.T).numpy()
        ranks.append(conservative_ranks(scores, st.targets[i:i + chunk]))
    return np.concatenate(ranks) if ranks else np.zeros(0)
