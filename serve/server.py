"""Run the app as a server process."""

from __future__ import annotations

import logging

import torch
from aiohttp import web

from rolecall.config import Config
from serve.app import make_app

log = logging.getLogger(__name__)


def run(cfg: Config) -> None:
    # One thread per process: requests are small, and one busy server
    # process per core scales better than threads fighting over two.
    torch.set_num_threads(cfg.serve.threads)
    import faiss
    faiss.omp_set_num_threads(cfg.serve.threads)
    app = make_app(cfg)
    url = f"http://{cfg.serve.host}:{cfg.serve.port}"
    log.info("rolecall answering on %s (bundle %s); try: curl %s/healthz",
             url, cfg.serve.bundle, url)
    web.run_app(app, host=cfg.serve.host, port=cfg.serve.port,
                print=None, access_log=None)
