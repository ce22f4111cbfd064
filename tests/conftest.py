"""Shared fixtures: the real bundled data in a temporary DuckDB file and a
tiny bundle trained on a real slice of it in a few seconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from rolecall.config import Config, DataConfig, ServeConfig
from train.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT / "data" / "raw"


def tiny_config(db: Path, artifacts: Path, name: str = "hm") -> Config:
    """Real data, small sizes: trains and evaluates in seconds."""
    cfg = Config()
    cfg.data = DataConfig(name=name, raw_dir=str(RAW), duckdb_path=str(db),
                          max_train_sessions=3000, max_eval_sessions=200)
    if name == "yoochoose":
        cfg.data.split, cfg.data.exclude_seen = "source", False
        cfg.data.primary_metric = "HR@20"
    cfg.model.dim = 16
    cfg.train.epochs = 2
    cfg.train.random_negatives = 256
    cfg.train.threads = 1
    cfg.eval.blend_grid = [0.0, 0.5]
    cfg.eval.baselines = ["pop"]
    cfg.artifacts_dir = str(artifacts)
    # Beside the artifacts, so no test logs events into the repo.
    cfg.serve.event_log_dir = str(Path(artifacts).parent / "events")
    # Exact search: building HNSW over 105k items takes most of a
    # minute on these cores, and tests want exact answers anyway.
    cfg.serve.item_index = "flat"
    cfg.serve.lookalike_index = "flat"
    cfg.serve.forgotten_path = str(Path(artifacts).parent / "forgotten.txt")
    # No shedding where a test is not about it: on 2 shared cores a
    # test's burst of clicks may wait past serve.max_queue_ms.
    cfg.serve.max_inflight = 0
    cfg.serve.freeze_heap = False  # many apps per process (one test on)
    cfg.serve.catalog_log_path = str(Path(artifacts).parent / "catalog.jsonl")
    return cfg


EXACT = ServeConfig(item_index="flat", lookalike_index="flat")


@pytest.fixture(scope="session")
def db_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("db") / "rolecall.duckdb"
    ingest(DataConfig(raw_dir=str(RAW), duckdb_path=str(path)))
    return path


@pytest.fixture(scope="session")
def tiny_bundle(db_path, tmp_path_factory) -> Path:
    from train.pipeline import run_offline
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(db_path, out / "artifacts")
    _, bundle = run_offline(cfg, out)
    return bundle


@pytest.fixture
def tiny_cfg(db_path, tmp_path) -> Config:
    return tiny_config(db_path, tmp_path / "artifacts")


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    """The tiny bundle's engine with exact search, one per test module
    (tests that change its bank build their own)."""
    from rolecall.bundle import load
    from rolecall.config import RankingConfig
    from serve.engine import Engine
    return Engine(load(tiny_bundle), RankingConfig(), EXACT)


@pytest.fixture
async def client(aiohttp_client, engine, tiny_cfg):
    """The real app around that engine, through aiohttp's test client."""
    from serve.app import make_app
    return await aiohttp_client(make_app(tiny_cfg, engine))
