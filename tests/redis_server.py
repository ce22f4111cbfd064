"""A real Redis server for tests, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import free_port


def start_redis(tmp: Path, port: int) -> subprocess.Popen:
    """redis-server on 127.0.0.1:port, once it answers PING; skips the
    test where Debian's redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get "
                    "install -y redis-server; .ci/run installs it)")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop_redis(proc)
                    raise AssertionError("redis never came up") from None
                time.sleep(0.05)
    finally:
        client.close()


def stop_redis(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


def redis_server(tmp: Path) -> Iterator[str]:
    """Yield the URL of a throwaway redis-server; skip if not installed."""
    port = free_port()
    proc = start_redis(tmp, port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis(proc)
