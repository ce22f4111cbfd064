"""The offline chain for one dataset: sessions -> fit -> evaluate -> export.

Plain functions of a typed config: the Hydra entry points hand their
config here, and tests call them directly with tiny sizes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rolecall.config import Config
from rolecall.device import resolve_device
from train.distributed import join, leave
from train.evaluate import EvalReport, evaluate, write_report
from train.export import export, versions
from train.fit import fit
from train.sessions import load_sessions

log = logging.getLogger(__name__)


def as_dict(cfg) -> dict:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dataclasses.asdict(cfg)


def typed(cfg) -> Config:
    """The dataclass behind a Hydra config, so code can rely on types."""
    return OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg


def configure_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def run_offline(cfg: Config, out_dir: Path
                ) -> tuple[EvalReport, Path] | tuple[None, None]:
    """Train, evaluate and export the bundle of cfg.data.name.

    Under torchrun every process trains its share; only process 0
    evaluates and exports, the others return (None, None).
    """
    started = time.perf_counter()
    cfg = typed(cfg)
    configure_threads(cfg.train.threads)
    group, device = join(resolve_device(cfg.train.device))
    data = load_sessions(cfg.data)
    result = fit(data, cfg.model, cfg.train, device,
                 cfg.data.primary_metric, group=group)
    if not group.main:  # process 0 evaluates and exports
        leave()
        return None, None
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state": result.model.state_dict(),
                "shape": result.model.shape.as_dict(),
                "config": as_dict(cfg), "versions": versions(),
                "best_epoch": result.best_epoch,
                "history": result.history,
                # the id table the weights were trained with
                "id_rows": result.tensors.id_rows},
               out_dir / f"checkpoint_{data.dataset}.pt")
    report, bank = evaluate(data, result, cfg.eval, cfg.ranking,
                            cfg.data.primary_metric, cfg.data.exclude_seen,
                            device)
    path = write_report(report, out_dir)
    log.info("%s evaluation written to %s", data.dataset, path)
    metrics = {"lookalike_weight": report.lookalike_weight,
               "primary": report.primary, "test_all": report.test_all,
               "test_seen": report.test_seen,
               "train_seconds": round(result.seconds, 1),
               "examples_per_second": round(result.examples_per_second),
               "best_epoch": result.best_epoch}
    bundle = export(Path(cfg.artifacts_dir) / data.dataset, data, result,
                    bank, as_dict(cfg), metrics)
    log.info("%s offline chain done in %.0fs", data.dataset,
             time.perf_counter() - started)
    leave()
    return report, bundle


def config_for(dataset: str) -> DictConfig:
    """This run's config with the data group switched to `dataset`."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    overrides = [o for o in HydraConfig.get().overrides.task
                 if not o.startswith("data=")]
    return compose(config_name="config",
                   overrides=overrides + [f"data={dataset}"])


def run_main(cfg: DictConfig, out_dir: Path) -> list[EvalReport]:
    """Ingest, then the offline chain for every dataset in cfg.datasets."""
    from train.ingest import ingest
    started = time.perf_counter()
    ingest(cfg.data, online_dir=cfg.serve.event_log_dir)
    reports = []
    for i, name in enumerate(cfg.datasets):
        log.info("offline chain %d/%d: %s", i + 1, len(cfg.datasets), name)
        report, _ = run_offline(config_for(name), out_dir)
        reports.append(report)
    path = out_dir / "evaluation.md"
    path.write_text("\n\n".join(r.to_markdown() for r in reports))
    log.info("main job's offline part done in %.0fs; tables in %s",
             time.perf_counter() - started, path)
    return reports


def evaluate_bundle(cfg: Config, out_dir: Path) -> EvalReport:
    """Evaluate an exported bundle again on cfg.data's split."""
    cfg = typed(cfg)
    from rolecall.bundle import load
    from train.encode import ItemTensors
    from train.fit import FitResult
    bundle = load(cfg.serve.bundle)
    data = load_sessions(cfg.data)
    if bundle.item_ids != data.catalog.item_ids:
        raise ValueError(f"{cfg.serve.bundle} was trained on another "
                         f"catalogue than data={cfg.data.name}")
    tensors = ItemTensors(torch.from_numpy(bundle.id_rows),
                          torch.from_numpy(bundle.features))
    result = FitResult(bundle.model, tensors, None,
                       bundle.manifest["best_epoch"])
    device = resolve_device(cfg.train.device)
    report, _ = evaluate(data, result, cfg.eval, cfg.ranking,
                         cfg.data.primary_metric, cfg.data.exclude_seen,
                         device)
    write_report(report, out_dir)
    return report


def run_roles(cfg: Config, out_dir: Path, n_simulated: int = 300,
              n_real: int = 600) -> str:
    """The role evaluation table on real mixed baskets and simulation."""
    from rolecall.bundle import load
    from train.role_eval import evaluate_roles, real_mixed_sessions
    from train.simulate import simulate
    cfg = typed(cfg)
    configure_threads(cfg.train.threads)
    bundle = load(cfg.serve.bundle)
    data = load_sessions(cfg.data)
    fit = data.train + data.valid
    from serve.engine import Engine
    from train.role_eval import EXACT
    engine = Engine(bundle, cfg.ranking, EXACT)
    sources = {
        "H&M test baskets that mix roles":
            real_mixed_sessions(data.test.items, engine, n_real),
        "simulated households (test-day baskets)":
            simulate(data.test.items, data.catalog.genders,
                     data.catalog.age_groups, n_simulated,
                     seed=cfg.train.seed)}
    tables = evaluate_roles(bundle, cfg.ranking, sources, fit.items,
                            np.asarray(fit.start_ts))
    return _written("\n\n".join(t.to_markdown() for t in tables),
                    out_dir / "roles.md", "role evaluation")


def run_stitching(cfg: Config, out_dir: Path) -> str:
    """Anonymous against identified-at-first-click, one table."""
    from rolecall.bundle import load
    from train.stitch_eval import evaluate_stitching
    cfg = typed(cfg)
    configure_threads(cfg.train.threads)
    text = evaluate_stitching(load(cfg.serve.bundle), cfg.ranking,
                              load_sessions(cfg.data))
    return _written(text, out_dir / "stitching.md", "stitching evaluation")


def run_merch(cfg: Config, out_dir: Path) -> str:
    """Accuracy against margin for cfg.merch.margin_weights, on the
    served bundle and cfg.data's validation and test days."""
    from rolecall.bundle import load
    from train.merch_eval import evaluate_margin
    cfg = typed(cfg)
    configure_threads(cfg.train.threads)
    data = load_sessions(cfg.data)
    n = cfg.merch.max_sessions
    text = evaluate_margin(load(cfg.serve.bundle), cfg.ranking,
                           data.valid.head(n), data.test.head(n),
                           cfg.merch)
    return _written(text, out_dir / "merchandising.md",
                    "merchandising evaluation")


def _written(text: str, path: Path, what: str) -> str:
    """An evaluation's tables, saved in the run folder and returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log.info("%s written to %s", what, path)
    return text


def run_export(cfg: Config, checkpoint: Path) -> Path:
    """Export a bundle again from a run's checkpoint, without training:
    the look-alike bank is rebuilt from train + validation sessions and
    the look-alike share read from the run's evaluation report."""
    import json
    from rolecall.model import TowerShape, build
    from train.encode import ItemTensors
    from train.evaluate import build_bank
    from train.fit import FitResult
    cfg = typed(cfg)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = build(TowerShape(**ckpt["shape"]))
    model.load_state_dict(ckpt["state"])
    data = load_sessions(cfg.data)
    tensors = ItemTensors(ckpt["id_rows"],
                          torch.from_numpy(data.catalog.features))
    result = FitResult(model, tensors, None, ckpt["best_epoch"])
    report = checkpoint.with_name(f"eval_{data.dataset}.json")
    if not report.is_file():
        raise FileNotFoundError(f"{report}: the run's evaluation report, "
                                "which holds the chosen look-alike share")
    metrics = json.loads(report.read_text())
    metrics["best_epoch"] = ckpt["best_epoch"]
    bank = build_bank(result, data.train + data.valid, len(data.catalog),
                      cfg.ranking, resolve_device(cfg.train.device))
    return export(Path(cfg.artifacts_dir) / data.dataset, data, result,
                  bank, ckpt["config"], metrics)
