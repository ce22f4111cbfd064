"""Run the app as a server process."""

from __future__ import annotations

import logging
import multiprocessing
import signal
from multiprocessing.connection import wait

import torch
from aiohttp import web
from omegaconf import DictConfig, OmegaConf

from rolecall.config import Config
from serve.admin_routes import token_hint
from serve.app import make_app

log = logging.getLogger(__name__)


def run(cfg: Config) -> None:
    if cfg.serve.workers > 1:
        run_workers(cfg)
    else:
        _serve(cfg, 0)


def _serve(cfg: Config | DictConfig, worker: int) -> None:
    if isinstance(cfg, DictConfig):
        # Plain dataclasses from here on: the handlers read settings on
        # every click, and an OmegaConf attribute costs ~40 us a read.
        cfg = OmegaConf.to_object(cfg)
    # One thread per process: requests are small, and one busy server
    # process per core scales better than threads fighting over two.
    torch.set_num_threads(cfg.serve.threads)
    import faiss
    faiss.omp_set_num_threads(cfg.serve.threads)
    app = make_app(cfg, worker=worker)
    url = f"http://{cfg.serve.host}:{cfg.serve.port}"
    log.info("starting: loading bundle %s", cfg.serve.bundle)

    def announce(_: str) -> None:
        # aiohttp calls this once the socket listens, after startup
        # (the bundle and indexes) is done: only then is it true.
        log.info("rolecall answering on %s (bundle %s); try: curl "
                 "%s/healthz", url, cfg.serve.bundle, url)
        log.info(token_hint(cfg))

    web.run_app(app, host=cfg.serve.host, port=cfg.serve.port,
                print=announce, access_log=None,
                reuse_port=cfg.serve.workers > 1)


def run_workers(cfg: Config) -> None:
    """serve.workers processes on one port; the kernel spreads the
    connections (SO_REUSEPORT). Sessions must be shared, so Redis."""
    n = cfg.serve.workers
    if cfg.serve.store != "redis":
        raise ValueError(
            f"serve.workers={n} needs serve.store=redis: with "
            f"'{cfg.serve.store}' each process would hold its own "
            "sessions and a visitor's clicks would scatter over them")
    # spawn, not fork: a forked copy of a process that has started
    # torch and faiss threads is not safe to use.
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child, args=(cfg, i),
                            name=f"rolecall-worker-{i}")
                for i in range(n)]
    for child in children:
        child.start()
    signalled = []

    def on_signal(signum, _frame):
        signalled.append(signum)
        _stop(children)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("%d workers on %s:%d", n, cfg.serve.host, cfg.serve.port)
    # Supervision is the service manager's job: when one worker ends,
    # all do, and the exit status says which failed.
    wait([c.sentinel for c in children])
    _stop(children)
    for child in children:
        child.join()
    failed = [c.exitcode for c in children if c.exitcode]
    if failed and not signalled:
        raise SystemExit(f"a worker exited with status {failed[0]}")


def _stop(children: list) -> None:
    for child in children:
        if child.is_alive():
            child.terminate()  # SIGTERM: aiohttp shuts down cleanly


def _child(cfg: Config, worker: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"[%(asctime)s][w{worker}][%(name)s] %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    _serve(cfg, worker)
