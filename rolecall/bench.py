"""`rolecall bench`: how fast a click is answered, and what limits it.

Parts (bench.parts), each a table printed and written to the run folder:

- online: the production server (`python -m serve`) on one core, the
  load generator (rolecall/loadgen.py) as another process on another
  core, replaying the test day's real sessions at fixed rates (open
  loop) and at growing concurrency (closed loop); GET /v1/ping of the
  same server in the same run is the floor.
- stages: the server's own timing_ms per stage of a click, one shopper
  at a time, with the configured indexes and with exact search.
- scale: seeded random catalogues of 100k to 10M rows, per index kind:
  memory, build time, query latency, recall@k against exact search.
- served_index: the served bundle's own item vectors and look-alike
  bank, queried with session states of the test day: recall at the
  served k and time per query, for each index kind and setting; the
  real counterpart of `scale`, and the case for `auto`'s choice.
- train: examples per second and seconds per epoch on the data.
- device: a training epoch and the server at a few rates, on the CPU
  and on the GPU (rolecall/device_bench.py; not in the default parts).
- sessions: a million distinct sessions through the memory store and
  the per-click session update, in simulated time, in a fresh process:
  memory and sessions held as idle expiry, then the cap, bite.
- overload: the server's capacity, then an open loop at twice it (how
  many get a quick 503, how fast the rest are answered), then a low
  rate (does it recover); also with shedding off, for comparison.

Every figure is compared with one measured in the same run, because
the machine is shared and absolute times drift between runs.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import faiss
import numpy as np
import psutil
from omegaconf import DictConfig, OmegaConf

from rolecall.config import BenchConfig, Config, IndexConfig
from rolecall.index import build_index, recall_at_k

log = logging.getLogger(__name__)

EXACT = ["serve.item_index=flat", "serve.lookalike_index=flat"]


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", "",
                 "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(_cell(c) for c in r) + " |"
                  for r in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def run_bench(cfg: Config | DictConfig, out_dir: Path) -> list[Table]:
    passed = _server_overrides()
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_object(cfg)
    bench = cfg.bench
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[Table] = []

    def keep(new: list[Table]) -> None:
        # Written as each part ends: a later part failing keeps these.
        tables.extend(new)
        for t in new:
            print(t.to_markdown())
        (out_dir / "bench.md").write_text(
            "\n".join(t.to_markdown() for t in tables))

    if {"online", "stages"} & set(bench.parts):
        keep(online_tables(cfg, out_dir, passed))
    if "scale" in bench.parts:
        keep([scale_table(bench, cfg.serve.index)])
    if "served_index" in bench.parts:
        keep([served_index_table(cfg, out_dir)])
    if "train" in bench.parts:
        keep([train_table(cfg)])
    if "device" in bench.parts:
        from rolecall.device_bench import device_tables
        keep(device_tables(cfg, out_dir, passed))
    if "sessions" in bench.parts:
        keep([sessions_table(bench)])
    if "overload" in bench.parts:
        keep([overload_table(cfg, out_dir, passed)])
    log.info("bench tables written to %s", out_dir / "bench.md")
    return tables


def _server_overrides() -> list[str]:
    """The bench command's serve.* and ranking.* overrides, passed on."""
    from hydra.core.hydra_config import HydraConfig
    if not HydraConfig.initialized():
        return []
    task = HydraConfig.get().overrides.task
    return [o for o in task if o.startswith(("serve.", "ranking."))]


# ---- online: server and load generator as separate processes ----


def cores() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load generator cores); None where not pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


def _pinned(cpus: set[int] | None):
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_sessions(cfg: Config, path: Path) -> int:
    """The last day's sessions of bench.dataset, clicks in order."""
    bench = cfg.bench
    with duckdb.connect(cfg.data.duckdb_path, read_only=True) as con:
        rows = con.execute(
            "SELECT session_id, item_id FROM events "
            "WHERE dataset = ? AND item_id IS NOT NULL AND ts >= "
            "(SELECT date_trunc('day', max(ts)) FROM events "
            " WHERE dataset = ?) ORDER BY session_id, seq",
            [bench.dataset, bench.dataset]).fetchall()
    sessions: dict[str, list[str]] = {}
    for sid, item in rows:
        sessions.setdefault(sid, []).append(item)
    picked = list(sessions.items())[:bench.max_sessions]
    path.write_text(json.dumps(picked))
    log.info("%d sessions (%d clicks) to replay", len(picked),
             sum(len(s) for _, s in picked))
    return len(picked)


@contextmanager
def server(cfg: Config, out_dir: Path, name: str, overrides: list[str],
           cpus: set[int] | None):
    """The production server in its own process; yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "serve", f"serve.port={port}",
           f"serve.bundle={cfg.serve.bundle}",
           f"hydra.run.dir={out_dir / name}",
           # Bench traffic replays test baskets: it must never reach the
           # shop's event log, nor the next training run.
           f"serve.event_log_dir={out_dir / name / 'events'}",
           *overrides]
    logf = (out_dir / f"{name}.log").open("w")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                            preexec_fn=_pinned(cpus))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, cfg.bench.start_timeout_s)
        log.info("server %s up on %s (%s)", name, url, " ".join(overrides))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        logf.close()


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} "
                               "before answering; see its log")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready in {timeout:.0f}s")


class Loadgen:
    """Runs rolecall.loadgen in its own pinned process, one run a time."""

    def __init__(self, url: str, sessions: Path, out_dir: Path,
                 bench: BenchConfig, cpus: set[int] | None):
        self.url, self.sessions, self.out_dir = url, sessions, out_dir
        self.bench, self.cpus = bench, cpus
        self.runs = 0

    def __call__(self, mode: str, endpoint: str, value: float,
                 duration: float, stages: bool = False,
                 drain_after: bool = True) -> dict:
        self.runs += 1
        out = self.out_dir / f"load-{self.runs:02d}.json"
        key = "--rate" if mode == "open" else "--concurrency"
        cmd = [sys.executable, "-m", "rolecall.loadgen", "--url", self.url,
               "--sessions", str(self.sessions), "--mode", mode,
               "--endpoint", endpoint, key, str(value),
               "--duration", str(duration), "--lanes",
               str(self.bench.lanes), "--timeout",
               str(self.bench.timeout_s), "--tag", f"r{self.runs}",
               "--out", str(out)] + (["--stages"] if stages else [])
        subprocess.run(cmd, check=True, preexec_fn=_pinned(self.cpus))
        result = json.loads(out.read_text())
        log.info("%s %s %s: %.0f/s, p99 %s ms, %d errors", mode, endpoint,
                 value, result["throughput"],
                 result["latency_ms"].get("p99"), result["errors"])
        if drain_after:
            drain(self.url, self.bench.timeout_s * 6)
        return result


def drain(url: str, timeout: float, floor_ms: float = 5.0) -> None:
    """Wait until the server answers ping fast again.

    An overloaded run leaves a backlog the server keeps working on after
    the client gave up; the next run must not start inside it.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = time.perf_counter()
        with urllib.request.urlopen(f"{url}/v1/ping", timeout=timeout):
            pass
        if (time.perf_counter() - t) * 1e3 < floor_ms:
            return
        time.sleep(0.2)
    log.warning("server at %s still slow after %.0fs", url, timeout)


def online_tables(cfg: Config, out_dir: Path,
                  passed: list[str]) -> list[Table]:
    bench = cfg.bench
    sessions = out_dir / "sessions.json"
    write_sessions(cfg, sessions)
    server_cpus, client_cpus = cores() if bench.pin else (None, None)
    tables, stage_runs = [], {}
    with server(cfg, out_dir, "server", passed, server_cpus) as url:
        load = Loadgen(url, sessions, out_dir, bench, client_cpus)
        load("closed", "events", 1, bench.warmup_s)
        if "online" in bench.parts:
            tables += load_tables(load, bench)
        if "stages" in bench.parts:
            stage_runs["configured"] = load("closed", "events", 1,
                                            bench.stage_clicks_s, True)
    if "stages" in bench.parts and bench.compare_flat:
        with server(cfg, out_dir, "server-exact", passed + EXACT,
                    server_cpus) as url:
            load = Loadgen(url, sessions, out_dir / "exact", bench,
                           client_cpus)
            load.out_dir.mkdir(exist_ok=True)
            load("closed", "events", 1, bench.warmup_s)
            stage_runs["exact"] = load("closed", "events", 1,
                                       bench.stage_clicks_s, True)
    if stage_runs:
        tables.append(stage_table(stage_runs))
    (out_dir / "online.json").write_text(json.dumps(
        {"stages": stage_runs}, default=str))
    return tables


LOAD_HEADER = ["endpoint", "target", "sent", "answered/s", "errors",
               "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
               "send lag p99 ms", "client CPU"]


def highest_rate(runs: list[dict], p99_ms: float = 20.0) -> float:
    """The highest rate that passed (no errors, p99 under p99_ms, the
    rate achieved) with every lower rate passing too: a noisy pass
    above a failure does not count."""
    best = 0
    for r in sorted(runs, key=lambda r: r["target"]):
        if (r["errors"] or r["latency_ms"].get("p99", 1e9) >= p99_ms
                or r["throughput"] < 0.95 * r["target"]):
            break
        best = r["target"]
    return best


def _load_row(r: dict) -> list:
    lat = r["latency_ms"]
    return [r["endpoint"], r["target"], r["sent"], r["throughput"],
            r["errors"], *(lat.get(p, "-") for p in
                           ("p50", "p90", "p99", "p99.9")),
            r["send_lag_ms"].get("p99", "-"), r["client_cpu"]]


def load_tables(load: Loadgen, bench: BenchConfig) -> list[Table]:
    open_rows, closed_rows = [], []
    for rate in bench.rates:
        for endpoint in ("events", "ping"):
            open_rows.append(load("open", endpoint, rate,
                                  bench.duration_s))
    for conc in bench.concurrency:
        for endpoint in ("events", "ping"):
            closed_rows.append(load("closed", endpoint, conc,
                                    bench.duration_s))
    best = highest_rate([r for r in open_rows
                         if r["endpoint"] == "events"])
    note = (f"Open loop: target = requests per second, latency from "
            f"each request's due time. Highest rate with p99 < 20 ms and "
            f"no errors, every lower rate passing too: {best:g}/s. Client "
            f"CPU = load generator CPU "
            f"seconds per second on its own core.")
    return [
        Table("Open loop: POST /v1/events vs GET /v1/ping",
              LOAD_HEADER, [_load_row(r) for r in open_rows], note),
        Table("Closed loop: shoppers waiting for each answer",
              LOAD_HEADER, [_load_row(r) for r in closed_rows],
              "Closed loop: target = concurrent shoppers, each replaying "
              "whole sessions in order.")]


def stage_table(runs: dict[str, dict]) -> Table:
    header = ["stage"]
    for name in runs:
        header += [f"{name} median ms", f"{name} p99 ms"]
    stages = list(next(iter(runs.values()))["stages_ms"])
    rows = []
    for stage in stages:
        row = [stage]
        for r in runs.values():
            v = np.asarray(r["stages_ms"].get(stage, [np.nan]))
            row += [float(np.median(v)), float(np.percentile(v, 99))]
        rows.append(row)
    total, trip = ["server stages, summed"], ["client round trip"]
    for r in runs.values():
        s = np.sum([r["stages_ms"][k] for k in stages], axis=0)
        total += [float(np.median(s)), float(np.percentile(s, 99))]
        trip += [r["latency_ms"]["p50"], r["latency_ms"]["p99"]]
    rows += [total, trip]
    n = {k: r["ok"] for k, r in runs.items()}
    return Table("Per-stage time of one click (server's timing_ms)",
                 header, rows,
                 f"One shopper at a time; clicks per column: {n}. "
                 "'exact': the same server forced to flat search.")


# ---- scale: index kinds on seeded random catalogues ----


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 1 << 20):  # chunks: no float64 copy of 10M
        chunk = rng.standard_normal((min(1 << 20, n - s), d),
                                    dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        x[s:s + len(chunk)] = chunk
    return x


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def query_ms(index: faiss.Index, xq: np.ndarray, k: int,
             budget_s: float = 2.0) -> float:
    """Median ms of one query at a time on one thread."""
    faiss.omp_set_num_threads(1)
    times, end = [], time.perf_counter() + budget_s
    for q in xq:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t)
        if time.perf_counter() > end and len(times) >= 5:
            break
    return float(np.median(times)) * 1e3


def _sweep(index, kind: str, params: IndexConfig) -> list[tuple[str, int]]:
    if kind == "hnsw":
        return [("efSearch", ef) for ef in
                sorted({params.hnsw_ef_search, 128, 256, 512})]
    if kind == "ivf":
        return [("nprobe", p) for p in
                sorted({params.ivf_nprobe, 64, 128, 256, 512, 1024, 2048})
                if p <= index.nlist]
    return [("exact", 0)]


def _set(index, setting: str, value: int) -> None:
    if setting == "efSearch":
        index.hnsw.efSearch = value
    elif setting == "nprobe":
        index.nprobe = value


def scale_rows(name: str, xb: np.ndarray, xq: np.ndarray,
               kinds: list[str], params: IndexConfig, k: int,
               goal: float, threads: int) -> list[list]:
    """Rows per kind and setting, each setting until recall >= goal."""
    rows, flat_ms, I_exact = [], None, None
    for kind in ["flat"] + [x for x in kinds if x != "flat"]:
        faiss.omp_set_num_threads(threads)
        before, t = _rss(), time.perf_counter()
        index = build_index(xb, kind, params)
        build_s = time.perf_counter() - t
        mem = (_rss() - before) / 2**20
        if kind == "flat":
            _, I_exact = index.search(xq, k)
        for setting, value in _sweep(index, kind, params):
            _set(index, setting, value)
            faiss.omp_set_num_threads(threads)
            _, I = index.search(xq, k)
            recall = recall_at_k(I, I_exact)
            ms = query_ms(index, xq, k)
            flat_ms = flat_ms or ms
            rows.append([name, kind, f"{setting} {value}" if value else
                         setting, round(mem), round(build_s, 1), ms,
                         round(ms / flat_ms, 3), round(recall, 3)])
            if recall >= goal:
                break
        del index
    return rows


def scale_table(bench: BenchConfig, params: IndexConfig) -> Table:
    threads = len(os.sched_getaffinity(0))
    rows = []
    for n in bench.scale_sizes:
        xb = unit_rows(n, bench.scale_dim, seed=n)
        xq = unit_rows(bench.scale_queries, bench.scale_dim, seed=1)
        kinds = [x for x in bench.scale_kinds
                 if x != "hnsw" or n <= bench.scale_hnsw_max_rows]
        log.info("scale: %d rows, kinds %s", n, kinds)
        rows += scale_rows(f"{n:,}", xb, xq, kinds, params,
                           bench.scale_k, bench.scale_recall_goal, threads)
        del xb
    return Table(
        f"Index scale: seeded unit vectors, dim {bench.scale_dim}, "
        f"recall@{bench.scale_k} vs exact", [
            "rows", "index", "setting", "memory MiB", "build s",
            "query ms", "vs flat", f"recall@{bench.scale_k}"], rows,
        f"Builds on {threads} threads, queries one at a time on one "
        f"thread; recall on {bench.scale_queries} queries against exact "
        f"search. Each kind's settings are tried in order until recall "
        f"reaches {bench.scale_recall_goal}. Random vectors are the hard "
        f"case for approximate search (no clusters); a catalogue and a "
        f"look-alike bank of n rows are the same search problem. HNSW "
        f"only up to {bench.scale_hnsw_max_rows:,} rows (build time). "
        f"HNSW M={params.hnsw_m}, efConstruction="
        f"{params.hnsw_ef_construction}; IVF nlist about sqrt(rows).")


def served_index_table(cfg: Config, out_dir: Path) -> Table:
    from rolecall.bundle import load
    from rolecall.events import EVENT_INDEX
    from rolecall.lookalikes import normalize
    from rolecall.model import LastState
    bench, params, ranking = cfg.bench, cfg.serve.index, cfg.ranking
    bundle = load(cfg.serve.bundle)
    path = out_dir / "sessions.json"
    if not path.exists():
        write_sessions(cfg, path)
    index = {item: i for i, item in enumerate(bundle.item_ids)}
    encode = LastState(bundle.model.session)
    vecs = np.ascontiguousarray(bundle.item_vectors[:, :-1])
    states = []
    for _, items in json.loads(path.read_text()):
        rows = [index[i] for i in items if i in index]
        for end in range(1, len(rows) + 1):  # each click's state
            states.append(encode(vecs, rows[:end],
                                 [EVENT_INDEX["click"]] * end))
        if len(states) >= bench.scale_queries:
            break
    xq = np.stack(states[:bench.scale_queries]).astype(np.float32)
    rows = []
    for name, xb, q, k in (
            ("items", bundle.item_vectors, xq, ranking.candidates),
            ("look-alikes", bundle.bank.vectors, normalize(xq[:, :-1]),
             ranking.lookalikes)):
        rows += _served_rows(name, np.ascontiguousarray(
            xb, dtype=np.float32), q, k, params)
    return Table(
        f"Served indexes: {cfg.serve.bundle}, test-day session states "
        f"as queries", ["rows", "index", "setting", "build s",
                        "query ms", "vs flat", "recall@k", "k"], rows,
        f"{len(xq)} queries, each the state after one click of a replayed "
        f"test-day session; k as served (ranking.candidates for items, "
        f"ranking.lookalikes for look-alikes). One thread; builds on "
        f"{len(os.sched_getaffinity(0))}. Served today: auto = flat below "
        f"{params.auto_flat_below:,} rows, IVF (nprobe "
        f"{params.ivf_nprobe}) from there.")


def _served_rows(name: str, xb: np.ndarray, xq: np.ndarray, k: int,
                 params: IndexConfig) -> list[list]:
    rows, flat_ms, I_exact = [], None, None
    label = f"{name} ({len(xb):,})"
    threads = len(os.sched_getaffinity(0))
    for kind in ("flat", "hnsw", "ivf"):
        faiss.omp_set_num_threads(threads)  # query_ms left it at one
        t = time.perf_counter()
        index = build_index(xb, kind, params, k=k)
        build_s = time.perf_counter() - t
        settings = {"flat": [("exact", 0)],
                    "hnsw": [("efSearch", max(params.hnsw_ef_search, k))],
                    "ivf": [("nprobe", p) for p in
                            sorted({8, 16, 32, 64, params.ivf_nprobe})]
                    }[kind]
        for setting, value in settings:
            _set(index, setting, value)
            faiss.omp_set_num_threads(1)
            _, I = index.search(xq, k)
            if I_exact is None:
                I_exact = I
            ms = query_ms(index, xq, k)
            flat_ms = flat_ms or ms
            rows.append([label, kind, f"{setting} {value}" if value
                         else setting, round(build_s, 1), ms,
                         round(ms / flat_ms, 3),
                         round(recall_at_k(I, I_exact), 3), k])
    return rows


# ---- training throughput ----


def train_table(cfg: Config) -> Table:
    import torch

    from rolecall.device import resolve_device
    from train.fit import fit
    from train.sessions import load_sessions
    bench = cfg.bench
    torch.set_num_threads(bench.train_threads)
    tcfg = dataclasses.replace(cfg.train, epochs=bench.train_epochs,
                               refit=False, threads=bench.train_threads)
    data = load_sessions(cfg.data)
    result = fit(data, cfg.model, tcfg, resolve_device(tcfg.device),
                 cfg.data.primary_metric)
    epochs = len(result.history) or bench.train_epochs
    examples = result.examples_per_second * result.seconds
    return Table(
        "Training throughput", ["dataset", "threads", "epochs",
                                "examples", "s per epoch", "examples/s"],
        [[data.dataset, bench.train_threads, epochs, int(examples),
          round(result.seconds / epochs, 1),
          round(result.examples_per_second)]],
        "An example is one next-item position of a training session. "
        "Seconds include each epoch's validation on 3,000 sessions.")


# ---- sessions: memory of the live session store ----


def session_run(bench: BenchConfig, cap: int, ttl_s: float) -> dict:
    """Push bench.session_count distinct sessions through the memory
    store and the click path's session update, in simulated time.

    Runs in a fresh process (sessions_table), so that the reference is
    a process that has held no sessions yet. No model work: item roles
    rotate through a few people, as a shop's clicks would.
    """
    from rolecall.roles import Role
    from serve import session_roles
    from serve.sessions import Event, MemoryStore, Session
    people = [Role("women", "adult"), Role("men", "adult"),
              Role("girls", "child", "110-116"), None]
    now = [0.0]
    store = MemoryStore(cap, ttl_s, clock=lambda: now[0])
    reference = _rss() / 2**20
    rows, started = [], time.perf_counter()
    for i in range(bench.session_count):
        now[0] = i / bench.session_rate
        sid = f"bench-{i}"
        session = store.get(sid) or Session(sid)
        for j in range(bench.session_clicks):
            event = Event(f"{sid}-{j}", now[0], "click",
                          item=(i * 7 + j) % 105_542)
            session_roles.record(session, event,
                                 people[(i + j) % len(people)], 200,
                                 now[0])
        store.put(session)
        if (i + 1) % bench.session_checkpoint == 0:
            rows.append([i + 1, len(store),
                         f"{store.expired:,} / {store.evicted:,}",
                         _rss() / 2**20, _peak_rss_mib()])
    return {"reference": reference, "rows": rows,
            "seconds": time.perf_counter() - started}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sessions_table(bench: BenchConfig) -> Table:
    runs = {f"idle expiry {bench.session_ttl_s:g} s":
            (bench.session_count, bench.session_ttl_s),
            f"cap {bench.session_cap:,}":
            (bench.session_cap, float("inf"))}
    ctx = multiprocessing.get_context("spawn")
    rows, notes = [], []
    for name, (cap, ttl) in runs.items():
        with ctx.Pool(1) as pool:
            run = pool.apply(session_run, (bench, cap, ttl))
        ref = run["reference"]
        rows.append([name, "before the run", 0, "0 / 0", round(ref),
                     round(ref), 0])
        rows += [[name, pushed, held, removed, round(rss), round(peak),
                  round(rss - ref)] for pushed, held, removed, rss, peak
                 in run["rows"]]
        notes.append(f"{name}: {bench.session_count / run['seconds']:,.0f}"
                     " sessions/s")
        log.info("sessions: %s done in %.0fs", name, run["seconds"])
    return Table(
        f"Session memory: {bench.session_count:,} distinct sessions of "
        f"{bench.session_clicks} clicks", [
            "store", "sessions pushed", "held", "removed idle / cap",
            "RSS MiB",
            "peak RSS MiB", "over reference MiB"], rows,
        f"Sessions arrive {bench.session_rate:g} a simulated second "
        f"through MemoryStore and the click's session update "
        f"(serve/session_roles.record), each in a fresh process whose "
        f"RSS before the run is the reference. Idle expiry holds about "
        f"rate x ttl sessions; the cap holds the cap. Once either bites, "
        f"RSS stops growing with the sessions pushed: freed sessions' "
        f"memory is reused. "
        + "; ".join(notes) + ".")


# ---- overload: shedding past capacity, and recovery ----


OVERLOAD_OFF = ["serve.max_inflight=0"]


def overload_rows(load: Loadgen, bench: BenchConfig, name: str,
                  rates: tuple[int, int] | None) -> tuple[list, tuple]:
    """Rows of one server; measures the rates first when not given."""
    load("closed", "events", 1, bench.warmup_s)
    rows = []
    if rates is None:
        probe = load("closed", "events", bench.overload_shoppers,
                     bench.duration_s)
        capacity = probe["throughput"]
        rates = (round(capacity * bench.overload_factor),
                 max(round(capacity * bench.overload_recovery), 1))
        rows.append(_overload_row(
            name, f"capacity ({bench.overload_shoppers} shoppers)", probe))
    over = load("open", "events", rates[0], bench.overload_s,
                drain_after=False)
    after = load("open", "events", rates[1], bench.overload_recovery_s)
    rows += [_overload_row(name, f"{bench.overload_factor:g}x capacity",
                           over),
             _overload_row(name, f"then {bench.overload_recovery:g}x",
                           after)]
    return rows, rates


def _overload_row(name: str, phase: str, r: dict) -> list:
    shed = r["error_kinds"].get("http 503", 0)
    lat = r["latency_ms"]
    return [name, phase, r["target"], r["sent"], r["throughput"],
            round(shed / max(r["sent"], 1), 3), r["errors"] - shed,
            lat.get("p50", "-"), lat.get("p99", "-")]


def overload_table(cfg: Config, out_dir: Path,
                   passed: list[str]) -> Table:
    bench = cfg.bench
    sessions = out_dir / "sessions.json"
    if not sessions.exists():
        write_sessions(cfg, sessions)
    server_cpus, client_cpus = cores() if bench.pin else (None, None)
    servers = {"shedding on": passed}
    if bench.overload_compare_off:
        servers["shedding off"] = passed + OVERLOAD_OFF
    rows, rates = [], None  # both servers at the same rates
    for name, overrides in servers.items():
        folder = "overload-" + name.split()[-1]
        with server(cfg, out_dir, folder, overrides, server_cpus) as url:
            load = Loadgen(url, sessions, out_dir / folder, bench,
                           client_cpus)
            load.out_dir.mkdir(exist_ok=True)
            new, rates = overload_rows(load, bench, name, rates)
            rows += new
    serve = cfg.serve
    return Table(
        "Overload: past capacity, then back to a low rate", [
            "server", "phase", "target", "sent", "answered/s",
            "503 share", "other errors", "p50 ms", "p99 ms"], rows,
        f"Capacity: answers per second of a closed loop of "
        f"{bench.overload_shoppers} shoppers on the first server. Then, "
        f"on each server, an open loop at {bench.overload_factor:g}x that "
        f"for {bench.overload_s:g} s and, at once, "
        f"{bench.overload_recovery:g}x for {bench.overload_recovery_s:g} "
        f"s. Latency of answered (200) "
        f"requests only, from each request's due time; other errors are "
        f"client timeouts ({bench.timeout_s:g} s) and refused "
        f"connections. Shedding: serve.max_inflight="
        f"{serve.max_inflight}, max_queue={serve.max_queue}, "
        f"max_queue_ms={serve.max_queue_ms:g}; off: max_inflight=0.")
