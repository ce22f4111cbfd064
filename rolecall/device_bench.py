"""`rolecall bench bench.parts=[device]`: CPU against GPU, one run.

Two tables: one training epoch of the configured dataset per device,
and the production server on each device (`serve.device=cpu|cuda`,
micro-batching as configured: by default on for the GPU, off for the
CPU) at a few open-loop rates. `.ci/device-check` runs this part on a
GPU machine; without a CUDA device the GPU rows say so and the CPU rows
still run.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from rolecall.bench import (Loadgen, Table, cores, server,
                            write_sessions)
from rolecall.config import Config

log = logging.getLogger(__name__)

# Room for a GPU's batches: admission bounds how many clicks can share
# one (serve/overload.py), so both servers get the same wide limits.
WIDE = ["serve.max_inflight=128", "serve.max_queue=512",
        "serve.max_batch=128"]


def devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def no_gpu_note() -> str:
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}."
    return (f"No CUDA device visible to torch {torch.__version__}: the "
            f"GPU rows were not measured.")


def train_rows(cfg: Config) -> Table:
    from train.fit import fit
    from train.sessions import load_sessions
    bench = cfg.bench
    data = load_sessions(cfg.data)
    rows, cpu_s = [], None
    for device in devices():
        threads = bench.train_threads
        torch.set_num_threads(threads)
        tcfg = dataclasses.replace(cfg.train, epochs=bench.train_epochs,
                                   refit=False, threads=threads,
                                   device=device)
        result = fit(data, cfg.model, tcfg, torch.device(device),
                     cfg.data.primary_metric)
        per_epoch = result.seconds / max(len(result.history), 1)
        cpu_s = cpu_s or per_epoch
        rows.append([device, threads, round(per_epoch, 1),
                     round(result.examples_per_second),
                     round(cpu_s / per_epoch, 1),
                     round(result.history[-1][cfg.data.primary_metric], 4)
                     if result.history else "-"])
    return Table(
        f"Training, one epoch of {data.dataset}: CPU against GPU",
        ["device", "CPU threads", "s per epoch", "examples/s",
         "speed-up vs CPU", f"valid {cfg.data.primary_metric}"], rows,
        f"Same data, seed and batch size on each device; the GPU trains "
        f"with bfloat16 autocast (train.amp=auto). {no_gpu_note()}")


def serve_rows(cfg: Config, out_dir: Path, passed: list[str]) -> Table:
    bench = cfg.bench
    sessions = out_dir / "sessions.json"
    write_sessions(cfg, sessions)
    server_cpus, client_cpus = cores() if bench.pin else (None, None)
    rows = []
    for device in devices():
        folder = out_dir / f"device-{device}"
        folder.mkdir(parents=True, exist_ok=True)
        with server(cfg, out_dir, f"server-{device}",
                    passed + [f"serve.device={device}", *WIDE],
                    server_cpus) as url:
            load = Loadgen(url, sessions, folder, bench, client_cpus)
            load("closed", "events", 1, bench.warmup_s)
            for rate in bench.device_rates:
                r = load("open", "events", rate, bench.duration_s)
                lat = r["latency_ms"]
                rows.append([device, rate, r["throughput"], r["errors"],
                             lat.get("p50", "-"), lat.get("p99", "-")])
    return Table(
        "Serving: POST /v1/events, CPU server against GPU server",
        ["device", "target/s", "answered/s", "errors", "p50 ms",
         "p99 ms"], rows,
        f"One server process pinned to one core either way; the load "
        f"generator on another. {no_gpu_note()}")


def device_tables(cfg: Config, out_dir: Path,
                  passed: list[str]) -> list[Table]:
    return [train_rows(cfg), serve_rows(cfg, out_dir, passed)]
