"""Data-parallel training across the processes torchrun starts.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain
`rolecall train`) training runs in one process and nothing here does
anything. With them, every process joins one group (NCCL between GPUs,
gloo between CPU processes), takes its share of every batch, and
DistributedDataParallel averages the gradients, so all processes hold
the same weights after every step. Process 0 alone evaluates, writes the
checkpoint and exports the bundle.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, batch: np.ndarray) -> np.ndarray:
        """This process's rows of a global batch (every world-th)."""
        return batch[self.rank::self.world]

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Every process's values, concatenated in rank order."""
        if not self.active:
            return values
        parts: list = [None] * self.world
        dist.all_gather_object(parts, values)
        return np.concatenate(parts)


def from_env() -> Group:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    return Group(int(os.environ["RANK"]), world,
                 int(os.environ.get("LOCAL_RANK", "0")))


def join(device: torch.device) -> tuple[Group, torch.device]:
    """Join torchrun's group (once); a GPU process takes its own GPU."""
    group = from_env()
    if not group.active:
        return group, device
    if device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        log.info("process %d of %d joined (%s on %s)", group.rank,
                 group.world, backend, device)
    return group, device


def check_in_sync(model: torch.nn.Module, group: Group) -> None:
    """Fail loudly if the processes' weights drifted apart."""
    if not group.active:
        return
    total = torch.stack([p.detach().double().sum()
                         for p in model.parameters()]).sum().reshape(1)
    low, high = total.clone(), total.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.allclose(low, high, rtol=1e-9, atol=1e-9):
        raise RuntimeError(f"data-parallel weights differ between "
                           f"processes: sums {low.item()} .. "
                           f"{high.item()}")


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
