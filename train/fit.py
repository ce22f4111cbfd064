"""The training loop: sampled softmax over in-batch and random negatives.

Every position of a session predicts its next item. Candidates are the
batch's targets plus items drawn uniformly from the whole catalogue (so
never-sold articles learn to stay low), each corrected by the log of its
chance to be a candidate (logQ), which keeps popular items from being
punished just for showing up as negatives often.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from rolecall.config import ModelConfig, TrainConfig
from rolecall.events import N_EVENT_TYPES
from rolecall.model import TowerShape, TwoTower, build
from train.encode import ItemTensors, batch_inputs
from train.metrics import RankMetrics
from train.sessions import SessionData
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


class Step:
    """One optimisation step's loss, with its constants built once."""

    def __init__(self, model: TwoTower, tensors: ItemTensors,
                 pop: np.ndarray, cfg: TrainConfig, mcfg: ModelConfig,
                 device):
        self.model, self.tensors, self.cfg = model, tensors, cfg
        self.id_dropout = mcfg.id_dropout
        self.device = device
        self.n_items = len(pop)
        self.pop = torch.from_numpy(pop).to(device)

    def loss(self, items, types, gen: torch.Generator) -> torch.Tensor:
        ids, feats, typ, mask = batch_inputs(items, types, self.tensors,
                                             self.device)
        if self.id_dropout > 0:
            hide = torch.rand(ids.shape, generator=gen,
                              device=self.device) < self.id_dropout
            ids = ids.masked_fill(hide, 0)
        states = self.model.encode_sessions(ids, feats, typ, mask)
        targets = torch.from_numpy(_pad_targets(items)).to(self.device)
        valid = targets >= 0
        q = states[valid]  # (P, d + 1)
        t = targets[valid]  # (P,) catalogue indices
        n_rand = self.cfg.random_negatives
        rand = torch.randint(self.n_items, (n_rand,), generator=gen,
                             device=self.device)
        cand, label = torch.unique(torch.cat([t, rand]),
                                   return_inverse=True)
        label = label[:len(t)]
        vecs = self.model.item(self._ids(cand), self.tensors.features[cand])
        logits = q @ vecs.T  # (P, C)
        if self.cfg.logq_correction:
            # Expected appearances of each candidate in this batch.
            q_c = len(t) * self.pop[cand] + n_rand / self.n_items
            logits = logits - torch.log(q_c.clamp(max=1.0)).float()
        return torch.nn.functional.cross_entropy(logits, label)

    def _ids(self, cand: torch.Tensor) -> torch.Tensor:
        return self.tensors.id_rows[cand]


def _pad_targets(items: list[np.ndarray]) -> np.ndarray:
    L = max(len(s) for s in items)
    out = np.full((len(items), L), -1, dtype=np.int64)
    for i, s in enumerate(items):
        out[i, :len(s) - 1] = s[1:]
    return out


def fit(data: SessionData, mcfg: ModelConfig, cfg: TrainConfig,
        device: torch.device, primary: str = "HR@20",
        valid_sessions: int = 3000) -> FitResult:
    """Train on data.train, keep the epoch best on data.valid.

    With cfg.refit, train again on train + validation for the chosen
    number of epochs; that model is returned, the history is the first
    run's.
    """
    first = _fit(data, mcfg, cfg, device, primary, valid_sessions)
    if not cfg.refit:
        return first
    log.info("%s: refit on train + validation for %d epochs",
             data.dataset, first.best_epoch)
    merged = dataclasses.replace(data, train=data.train + data.valid)
    again = _fit(merged, mcfg, dataclasses.replace(
        cfg, epochs=first.best_epoch, patience=first.best_epoch + 1),
        device, primary, valid_sessions, validate=False)
    again.history = first.history
    again.best_epoch = first.best_epoch
    again.seconds += first.seconds
    again.selected = first
    return again


def _fit(data: SessionData, mcfg: ModelConfig, cfg: TrainConfig,
         device: torch.device, primary: str, valid_sessions: int,
         validate: bool = True) -> FitResult:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    tensors, id_items = item_tensors(data)
    shape = TowerShape(n_ids=len(id_items),
                       field_sizes=data.catalog.field_sizes(),
                       n_event_types=N_EVENT_TYPES, dim=mcfg.dim,
                       dropout=mcfg.dropout,
                       recency_init=mcfg.recency_init)
    model = build(shape).to(device)
    dev_tensors = tensors.to(device)
    step = Step(model, dev_tensors, popularity(data), cfg, mcfg, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    valid = data.valid.head(valid_sessions)
    lengths = np.array([len(s) for s in data.train.items])
    best, best_state, best_epoch, history = -1.0, None, 0, []
    started, examples = time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        batches = _batches(lengths, cfg.batch_size, rng)
        total, seen = 0.0, 0
        bar = tqdm(batches, desc=f"{data.dataset} epoch {epoch}",
                   unit="batch", leave=False, mininterval=2.0,
                   disable=None)
        for b in bar:
            items = [data.train.items[i] for i in b]
            types = [data.train.types[i] for i in b]
            loss = step.loss(items, types, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            seen += len(b)
            examples += int(sum(len(s) - 1 for s in items))
            bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
        if not validate:
            log.info("%s epoch %d: loss %.4f (%.0fs)", data.dataset, epoch,
                     total / max(seen, 1), time.perf_counter() - started)
            best_state, best_epoch = model.state_dict(), epoch
            continue
        metrics = _validate(model, valid, dev_tensors, device)
        metrics.update(epoch=epoch, loss=total / max(seen, 1))
        history.append(metrics)
        log.info("%s epoch %d: loss %.4f, valid %s %.4f, MRR@20 %.4f "
                 "(%.0fs)", data.dataset, epoch, metrics["loss"], primary,
                 metrics[primary], metrics["MRR@20"],
                 time.perf_counter() - started)
        if metrics[primary] > best:
            best, best_epoch = metrics[primary], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            log.info("no validation gain for %d epochs, stopping",
                     cfg.patience)
            break
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - started
    if validate:
        log.info("%s: best epoch %d (%s %.4f on validation)",
                 data.dataset, best_epoch, primary, best)
    return FitResult(model.cpu(), tensors, id_items, best_epoch, history,
                     seconds, examples / seconds)


def _validate(model, valid, tensors, device) -> dict:
    acc = RankMetrics(ks=(12, 20))
    acc.add(model_ranks(model, valid, tensors, device))
    return acc.summary()
