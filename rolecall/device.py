"""One device choice for training, export and serving."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def resolve_device(choice: str) -> torch.device:
    """auto -> cuda when present, else cpu with one line saying why."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; "
                         f"found '{choice}'")
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if choice == "cuda":
        raise RuntimeError("device=cuda but torch sees no CUDA device "
                           f"(torch {torch.__version__})")
    log.info("device=auto: no CUDA device visible to torch %s, using CPU",
             torch.__version__)
    return torch.device("cpu")
