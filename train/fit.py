"""The training loop: sampled softmax over in-batch and random negatives.

Every position of a session predicts its next item. Candidates are the
batch's targets plus items drawn uniformly from the whole catalogue (so
never-sold articles learn to stay low), each corrected by the log of its
chance to be a candidate (logQ), which keeps popular items from being
punished just for showing up as negatives often.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from rolecall.config import ModelConfig, TrainConfig
from rolecall.events import N_EVENT_TYPES
from rolecall.model import TowerShape, TwoTower, build
from train.distributed import Group, check_in_sync
from train.encode import ItemTensors, pad
from train.metrics import RankMetrics
from train.sessions import SessionData, SessionSet
from train.validate import model_ranks

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: TwoTower
    tensors: ItemTensors  # on CPU
    id_items: np.ndarray  # catalogue index of each id row (row 0: -1)
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    examples_per_second: float = 0.0
    # With refit: the train-only model, the one validation may judge.
    selected: FitResult | None = None


def item_tensors(data: SessionData) -> tuple[ItemTensors, np.ndarray]:
    """Id rows for items seen in training; row 0 for all others."""
    seen = data.fit_items("train")
    id_rows = np.zeros(len(data.catalog), dtype=np.int64)
    id_rows[seen] = np.arange(1, len(seen) + 1)
    id_items = np.concatenate([[-1], seen])
    return (ItemTensors(torch.from_numpy(id_rows),
                        torch.from_numpy(data.catalog.features)),
            id_items)


def popularity(data: SessionData) -> np.ndarray:
    counts = np.bincount(np.concatenate(data.train.items),
                         minlength=len(data.catalog)).astype(np.float64)
    return counts / counts.sum()


def _batches(lengths: np.ndarray, size: int,
             rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length, so padding stays small."""
    order = rng.permutation(np.flatnonzero(lengths >= 2))
    batches = []
    for start in range(0, len(order), size * 32):
        chunk = order[start:start + size * 32]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class SampledSoftmax(torch.nn.Module):
    """One step's loss, as a module so DistributedDataParallel can wrap
    it (it syncs gradients through the wrapped module's forward)."""

    def __init__(self, model: TwoTower, tensors: ItemTensors,
                 pop: np.ndarray, cfg: TrainConfig, device):
        super().__init__()
        self.model = model
        # Plain attributes, not buffers: constants, nothing to sync.
        self.tensors, self.cfg = tensors, cfg
        self.n_items = len(pop)
        self.pop = torch.from_numpy(pop).to(device)

    def forward(self, idx, typ, mask, targets, hide, rand) -> torch.Tensor:
        ids = self.tensors.id_rows[idx]
        if hide is not None:
            ids = ids.masked_fill(hide, 0)
        states = self.model.encode_sessions(ids, self.tensors.features[idx],
                                            typ, mask)
        valid = targets >= 0
        q = states[valid]  # (P, d + 1)
        t = targets[valid]  # (P,) catalogue indices
        cand, label = torch.unique(torch.cat([t, rand]),
                                   return_inverse=True)
        label = label[:len(t)]
        vecs = self.model.item(self.tensors.id_rows[cand],
                               self.tensors.features[cand])
        logits = q @ vecs.T  # (P, C)
        if self.cfg.logq_correction:
            # Expected appearances of each candidate in this batch.
            q_c = len(t) * self.pop[cand] + len(rand) / self.n_items
            logits = logits - torch.log(q_c.clamp(max=1.0)).float()
        return torch.nn.functional.cross_entropy(logits.float(), label)


@dataclass
class Inputs:
    """One process's share of a batch, padded, on its way to the device."""

    idx: torch.Tensor  # (B, L) catalogue indices
    typ: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L) 1.0 on real events
    targets: torch.Tensor  # (B, L) next item, -1 where none
    sessions: int
    examples: int

    def to(self, device) -> Inputs:
        move = {f: getattr(self, f).to(device, non_blocking=True)
                for f in ("idx", "typ", "mask", "targets")}
        return dataclasses.replace(self, **move)


def _inputs(items: list[np.ndarray], types: list[np.ndarray],
            pin: bool) -> Inputs:
    idx = torch.from_numpy(pad(items))
    lengths = torch.tensor([len(s) for s in items])
    mask = (torch.arange(idx.shape[1])[None, :]
            < lengths[:, None]).float()
    tensors = [idx, torch.from_numpy(pad(types)), mask,
               torch.from_numpy(_pad_targets(items))]
    if pin:
        tensors = [t.pin_memory() for t in tensors]
    return Inputs(*tensors, len(items), int(sum(len(s) - 1 for s in items)))


def _prefetch(make, jobs: list, depth: int = 2):
    """make(job) for each job, a few ahead in a thread: padding and
    copying the next batch overlaps the device's work on this one."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def work():
        for job in jobs:
            q.put(make(job))
        q.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not None:
        yield item


def _pad_targets(items: list[np.ndarray]) -> np.ndarray:
    L = max(len(s) for s in items)
    out = np.full((len(items), L), -1, dtype=np.int64)
    for i, s in enumerate(items):
        out[i, :len(s) - 1] = s[1:]
    return out


def fit(data: SessionData, mcfg: ModelConfig, cfg: TrainConfig,
        device: torch.device, primary: str = "HR@20",
        valid_sessions: int = 3000, group: Group = Group()) -> FitResult:
    """Train on data.train, keep the epoch best on data.valid.

    With cfg.refit, train again on train + validation for the chosen
    number of epochs; that model is returned, the history is the first
    run's. In a torchrun group every process calls this and gets the
    same model (train/distributed.py).
    """
    first = _fit(data, mcfg, cfg, device, primary, valid_sessions, group)
    if not cfg.refit:
        return first
    if group.main:
        log.info("%s: refit on train + validation for %d epochs",
                 data.dataset, first.best_epoch)
    merged = dataclasses.replace(data, train=data.train + data.valid)
    again = _fit(merged, mcfg, dataclasses.replace(
        cfg, epochs=first.best_epoch, patience=first.best_epoch + 1),
        device, primary, valid_sessions, group, validate=False)
    again.history = first.history
    again.best_epoch = first.best_epoch
    again.seconds += first.seconds
    again.selected = first
    return again


def autocast(cfg: TrainConfig, device: torch.device):
    """bfloat16 autocast on a GPU that has it (amp=auto|bf16), else
    nothing: bf16 keeps float32's range, so no loss scaling is needed,
    and the loss itself is taken in float32."""
    if cfg.amp not in ("auto", "bf16", "off"):
        raise ValueError(f"train.amp: auto, bf16 or off; found "
                         f"'{cfg.amp}'")
    on = (cfg.amp != "off" and device.type == "cuda"
          and torch.cuda.is_bf16_supported())
    if cfg.amp == "bf16" and not on:
        raise ValueError("train.amp=bf16 needs a CUDA device with "
                         "bfloat16")
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def _fit(data: SessionData, mcfg: ModelConfig, cfg: TrainConfig,
         device: torch.device, primary: str, valid_sessions: int,
         group: Group = Group(), validate: bool = True) -> FitResult:
    torch.manual_seed(cfg.seed)  # the same initial weights everywhere
    rng = np.random.default_rng(cfg.seed)  # the same batches everywhere
    # ... but each process its own negatives and hidden ids.
    gen = torch.Generator(device=device).manual_seed(
        cfg.seed + 7919 * group.rank)
    tensors, id_items = item_tensors(data)
    shape = TowerShape(n_ids=len(id_items),
                       field_sizes=data.catalog.field_sizes(),
                       n_event_types=N_EVENT_TYPES, dim=mcfg.dim,
                       dropout=mcfg.dropout,
                       recency_init=mcfg.recency_init)
    model = build(shape).to(device)
    dev_tensors = tensors.to(device)
    loss_fn = SampledSoftmax(model, dev_tensors, popularity(data), cfg,
                             device)
    net = loss_fn
    if group.active:
        net = torch.nn.parallel.DistributedDataParallel(
            loss_fn, device_ids=[device.index] if device.type == "cuda"
            else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    valid = data.valid.head(valid_sessions)
    lengths = np.array([len(s) for s in data.train.items])
    pin = device.type == "cuda"
    best, best_state, best_epoch, history = -1.0, None, 0, []
    started, examples = time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        # cfg.batch_size is the global batch: each process takes its
        # share, so one or many processes take the same steps.
        batches = [group.share(b) for b in
                   _batches(lengths, cfg.batch_size, rng)
                   if len(b) >= group.world]
        total, seen = 0.0, 0
        bar = tqdm(_prefetch(
            lambda b: _inputs([data.train.items[i] for i in b],
                              [data.train.types[i] for i in b], pin),
            batches), total=len(batches),
            desc=f"{data.dataset} epoch {epoch}", unit="batch",
            leave=False, mininterval=2.0,
            disable=None if group.main else True)
        for x in bar:
            x = x.to(device)
            hide = None
            if mcfg.id_dropout > 0:
                hide = torch.rand(x.idx.shape, generator=gen,
                                  device=device) < mcfg.id_dropout
            rand = torch.randint(len(data.catalog),
                                 (cfg.random_negatives,), generator=gen,
                                 device=device)
            with autocast(cfg, device):
                loss = net(x.idx, x.typ, x.mask, x.targets, hide, rand)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * x.sessions
            seen += x.sessions
            examples += x.examples
            bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
        if not validate:
            if group.main:
                log.info("%s epoch %d: loss %.4f (%.0fs)", data.dataset,
                         epoch, total / max(seen, 1),
                         time.perf_counter() - started)
            best_state, best_epoch = model.state_dict(), epoch
            continue
        metrics = _validate(model, valid, dev_tensors, device, group)
        metrics.update(epoch=epoch, loss=total / max(seen, 1))
        history.append(metrics)
        if group.main:
            log.info("%s epoch %d: loss %.4f, valid %s %.4f, MRR@20 %.4f "
                     "(%.0fs)", data.dataset, epoch, metrics["loss"],
                     primary, metrics[primary], metrics["MRR@20"],
                     time.perf_counter() - started)
        # Every process saw the same gathered ranks: same decision.
        if metrics[primary] > best:
            best, best_epoch = metrics[primary], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            if group.main:
                log.info("no validation gain for %d epochs, stopping",
                         cfg.patience)
            break
    check_in_sync(model, group)
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - started
    examples = int(group.gather(np.array([examples])).sum())
    if validate and group.main:
        log.info("%s: best epoch %d (%s %.4f on validation)",
                 data.dataset, best_epoch, primary, best)
    return FitResult(model.cpu(), tensors, id_items, best_epoch, history,
                     seconds, examples / seconds)


def _validate(model, valid, tensors, device, group: Group) -> dict:
    """Ranks on this process's share of the validation sessions,
    gathered, so every process computes the same metrics."""
    mine = SessionSet(valid.items[group.rank::group.world],
                      valid.types[group.rank::group.world])
    acc = RankMetrics(ks=(12, 20))
    acc.add(group.gather(model_ranks(model, mine, tensors, device)))
    return acc.summary()
