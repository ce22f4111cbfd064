"""Real server processes for tests: a free loopback port, a start that
waits for /healthz, and plain HTTP calls."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(bundle: Path, tmp: Path, name: str, *overrides: str
           ) -> tuple[subprocess.Popen, str]:
    """`python -m serve` on a free port; see ready() for the wait."""
    port = free_port()
    cmd = [sys.executable, "-m", "serve", f"serve.bundle={bundle}",
           f"serve.port={port}", f"hydra.run.dir={tmp / ('hydra-' + name)}",
           # Exact search: building HNSW over the catalogue takes longer
           # than the whole test.
           "serve.item_index=flat", "serve.lookalike_index=flat",
           *overrides]
    with (tmp / f"{name}.log").open("a") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def ready(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            get(f"{base}/healthz")
            return
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise AssertionError("server never came up") from None
            time.sleep(0.2)


def start_server(bundle: Path, tmp: Path, name: str, *overrides: str
                 ) -> tuple[subprocess.Popen, str]:
    """`python -m serve` on a free port; returns once it answers."""
    proc, base = launch(bundle, tmp, name, *overrides)
    ready(proc, base, tmp / f"{name}.log")
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type":
                                          "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{exc.code}: {exc.read()[:300]!r}") from exc
