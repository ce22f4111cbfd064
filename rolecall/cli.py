"""One console entry point: `rolecall <stage> [hydra overrides]`.

Stages:
  ingest     raw files -> DuckDB (and the server's event log)
  train      fit, evaluate and export one dataset (data=hm|yoochoose)
  evaluate   evaluate an exported bundle again
  export     export a bundle again from checkpoint=<train run>/...pt
  roles      the role-switch evaluation on real and simulated sessions
  stitching  anonymous against identified at the first click
  merch      accuracy against margin, per ranking.margin_weight
  serve      answer HTTP on serve.host:serve.port
  main       ingest, train every dataset in `datasets`, serve the first
  bench      load, per-stage, index-scale, training, session memory
             and overload tables

Every stage takes Hydra overrides, e.g.
`rolecall train data=yoochoose train.epochs=3`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rolecall.config import register

log = logging.getLogger(__name__)

# An absolute path: Hydra reads a relative one as a Python package when
# it is called from an installed console script.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
STAGES = ("ingest", "train", "evaluate", "export", "roles", "stitching",
          "merch", "serve", "main", "bench")
_stage = {"name": "main"}


def _out_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def stage_ingest(cfg: DictConfig) -> None:
    from train.ingest import ingest
    ingest(cfg.data, online_dir=cfg.serve.event_log_dir)


def stage_train(cfg: DictConfig) -> None:
    from train.pipeline import run_offline
    report, bundle = run_offline(cfg, _out_dir())
    if report is None:  # a torchrun process other than the first
        return
    print(report.to_markdown())
    print(f"\nbundle: {bundle}\nrun folder: {_out_dir()}")


def stage_evaluate(cfg: DictConfig) -> None:
    from train.pipeline import evaluate_bundle
    report = evaluate_bundle(cfg, _out_dir())
    print(report.to_markdown())


def stage_export(cfg: DictConfig) -> None:
    from train.pipeline import run_export
    if not cfg.checkpoint:
        raise SystemExit("export needs checkpoint=<run folder>/"
                         "checkpoint_<dataset>.pt from a train run")
    print(f"bundle: {run_export(cfg, Path(cfg.checkpoint))}")


def stage_roles(cfg: DictConfig) -> None:
    from train.pipeline import run_roles
    print(run_roles(cfg, _out_dir()))


def stage_stitching(cfg: DictConfig) -> None:
    from train.pipeline import run_stitching
    print(run_stitching(cfg, _out_dir()))


def stage_merch(cfg: DictConfig) -> None:
    from train.pipeline import run_merch
    print(run_merch(cfg, _out_dir()))


def stage_serve(cfg: DictConfig) -> None:
    from serve.server import run
    run(cfg)


def stage_bench(cfg: DictConfig) -> None:
    from rolecall.bench import run_bench
    run_bench(cfg, _out_dir())


def stage_main(cfg: DictConfig) -> None:
    from train.pipeline import run_main
    for report in run_main(cfg, _out_dir()):
        print("\n" + report.to_markdown())
    cfg.serve.bundle = str(Path(cfg.artifacts_dir) / cfg.datasets[0])
    stage_serve(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR,
            config_name="config")
def _run(cfg: DictConfig) -> None:
    globals()[f"stage_{_stage['name']}"](cfg)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown stage '{argv[0]}'; expected one of "
                  f"{', '.join(STAGES)}", file=sys.stderr)
            raise SystemExit(2)
        return
    _stage["name"] = argv[0]
    # faiss announces at info which CPU build it loaded; not news.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    register()
    sys.argv = [f"rolecall {argv[0]}"] + argv[1:]
    _run()


if __name__ == "__main__":
    main()
