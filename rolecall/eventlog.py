"""The event log's file format, read by serve (rebuild) and train (ingest).

JSON lines, one record per event, in files named
`events-YYYYMMDD-w<writer>-<n>.jsonl`: one series per day and writer
process, so names sort in write order. serve/eventlog.py writes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "events-"
SUFFIX = ".jsonl"
VERSION = 1  # of a record; records of another version are skipped


def log_files(directory: str | Path) -> list[Path]:
    """Every log file, oldest first (names sort by day, writer, number)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(root.glob(f"{PREFIX}*{SUFFIX}"))


def file_day(path: Path) -> str:
    return path.name[len(PREFIX):len(PREFIX) + 8]


def read_records(directory: str | Path,
                 since_day: str = "") -> Iterator[dict]:
    """Records in write order; unreadable lines are skipped and logged.

    A crash can leave a torn last line: a batch half written and never
    acknowledged. `since_day` (YYYYMMDD) skips files of earlier days.
    """
    for path in log_files(directory):
        if file_day(path) < since_day:
            continue
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    torn = not line.endswith(b"\n")
                    log.warning("%s line %d: %s, skipped (%d bytes)",
                                path, n, "torn by a crash" if torn
                                else "not JSON", len(line))
                    continue
                if isinstance(rec, dict) and rec.get("v") == VERSION:
                    yield rec
