"""The durable event log: every accepted event, on disk before the answer.

The file format is rolecall/eventlog.py's: a new file per day, writer
and past the size limit. Writes are group commits: the events that
arrive while a batch is being written and fsync'ed form the next batch,
and each request waits for the fsync of its own batch. One fsync thus
serves every concurrent request, and nothing is answered 200 that a
crash could lose.

A crash can leave a torn last line (a batch half written, never
acknowledged); reading skips it, and reopening cuts it off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path

import orjson

from rolecall.eventlog import PREFIX, SUFFIX, VERSION, file_day, log_files
from serve.sessions import Event, Session, SessionStore

log = logging.getLogger(__name__)

_EVENT_FIELDS = {f.name for f in fields(Event)}
_RECORDED = [f.name for f in fields(Event) if f.name != "item"]


class EventLogError(OSError):
    """The log could not write a batch; its events were not accepted."""


class EventLog:
    """Append-only, group-committed by a writer thread of its own.

    The thread, not a task on the event loop, takes each batch, so a
    request's write can start while the loop goes on computing its
    answer instead of at the loop's next turn, after it. How much they
    overlap is the OS scheduler's call: with the server pinned to one
    busy core, the writer mostly runs once the loop waits (the bench's
    event_log stage shows what is left). open() and close() are
    called on the loop.
    """

    def __init__(self, directory: str | Path, writer: int = 0,
                 max_bytes: int = 64 << 20):
        self.directory = Path(directory)
        self.writer = writer
        self.max_bytes = max_bytes
        self.batches = 0  # fsyncs so far; a test sees batching in it
        self._pending: list[tuple[bytes, asyncio.Future]] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._file = None
        self._path: Path | None = None
        self._closing = False
        # Held while a batch is written and while forget() rewrites.
        self._files = threading.Lock()

    async def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._open_file)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._write_loop,
                                        name="event-log-writer",
                                        daemon=True)
        self._thread.start()
        log.info("event log in %s (writer %d)", self.directory,
                 self.writer)

    async def append(self, record: dict) -> None:
        """Return once the record is on disk; raise EventLogError if not."""
        await self.submit(record)

    def submit(self, record: dict) -> asyncio.Future:
        """Start writing the record: the future is done once it is on
        disk, or fails with EventLogError. A caller may work on the
        event meanwhile, as long as nothing of it counts before then."""
        if self._thread is None or self._closing:
            raise EventLogError("the event log is not open")
        line = orjson.dumps(record) + b"\n"
        done = self._loop.create_future()
        with self._wake:
            self._pending.append((line, done))
            self._wake.notify()
        return done

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._thread is not None:
            with self._wake:
                self._closing = True
                self._wake.notify()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        with self._files:
            if self._file is not None:
                self._file.close()
                self._file = None

    async def forget(self, user_id: str, session_ids: set[str]) -> int:
        """Rewrite every log file without the customer's records (theirs
        by user_id, or of their sessions); returns how many went."""
        removed = await asyncio.to_thread(self._rewrite_locked, user_id,
                                          session_ids)
        log.info("event log: removed %d records of a forgotten customer",
                 removed)
        return removed

    def _rewrite_locked(self, user_id: str, session_ids: set[str]) -> int:
        with self._files:
            return self._rewrite(user_id, session_ids)

    def _rewrite(self, user_id: str, session_ids: set[str]) -> int:
        removed = 0
        for path in log_files(self.directory):
            kept, dropped = [], 0
            for line in path.read_bytes().splitlines(keepends=True):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    kept.append(line)  # a torn tail stays as it was
                    continue
                if (rec.get("user_id") == user_id
                        or rec.get("session_id") in session_ids):
                    dropped += 1
                else:
                    kept.append(line)
            if dropped:
                tmp = path.with_suffix(".tmp")
                with tmp.open("wb") as f:
                    f.write(b"".join(kept))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                removed += dropped
        if removed and self._file is not None:
            # The open handle points at a replaced file: reopen by name.
            self._reopen()
        _fsync_dir(self.directory)
        return removed

    def _write_loop(self) -> None:
        """The writer thread: each batch is what arrived while the last
        one was on its way to disk, so one fsync serves them all."""
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                batch, self._pending = self._pending, []
            if not batch:  # closing, and nothing left
                return
            data = b"".join(line for line, _ in batch)
            try:
                with self._files:
                    self._write(data)
                error = None
            except Exception as exc:  # the thread must outlive any batch
                log.error("event log write of %d events failed: %s",
                          len(batch), exc)
                error = EventLogError(f"event log write failed: {exc}")
            self.batches += 1
            try:
                self._loop.call_soon_threadsafe(_settle, batch, error)
            except RuntimeError:  # the loop is closed: nobody waits
                return

    def _write(self, data: bytes) -> None:
        if (self._file is None
                or self._file.tell() + len(data) > self.max_bytes
                or file_day(self._path) != _today()):
            self._reopen()
        start = self._file.tell()
        try:
            view = memoryview(data)
            while view:  # unbuffered: nothing left over after a failure
                view = view[self._file.write(view):]
            os.fsync(self._file.fileno())
        except OSError:
            self._discard(start)
            raise

    def _reopen(self) -> None:
        """The file to write to next (rotation, or after a failure); the
        old one stays open should the new one fail to open."""
        old = self._file
        self._open_file()
        if old is not None:
            old.close()

    def _discard(self, start: int) -> None:
        """Leave no part of a failed batch for the next to follow, or
        for a restart to replay; the next batch reopens the file."""
        f, self._file = self._file, None
        try:
            f.truncate(start)
        except OSError as exc:
            log.error("event log: could not cut a failed batch from %s "
                      "(%s); a restart may replay it", self._path, exc)
        try:
            f.close()
        except OSError:
            pass

    def _open_file(self) -> None:
        series = f"{PREFIX}{_today()}-w{self.writer}-"
        mine = [p for p in log_files(self.directory)
                if p.name.startswith(series)]
        if mine and mine[-1].stat().st_size < self.max_bytes:
            path = mine[-1]
            _cut_torn_tail(path)
        else:
            n = int(mine[-1].stem.rsplit("-", 1)[1]) + 1 if mine else 0
            path = self.directory / f"{series}{n:04d}{SUFFIX}"
        f = path.open("ab", buffering=0)
        if not mine or path != mine[-1]:
            _fsync_dir(self.directory)  # the new name survives a crash
        self._path, self._file = path, f

def _settle(batch: list[tuple[bytes, asyncio.Future]],
            error: EventLogError | None) -> None:
    """On the loop: tell each waiting request how its write went."""
    for _, done in batch:
        if done.done():  # the request was cancelled meanwhile
            continue
        if error is None:
            done.set_result(None)
        else:  # one each: a raised exception gathers its traceback
            done.set_exception(EventLogError(*error.args))


def _today() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline: a batch never acknowledged."""
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(max(size - 1, 0))
        if f.read(1) == b"\n":
            return
        # Scan back for the last complete line.
        pos = size
        while pos > 0:
            step = min(pos, 1 << 16)
            f.seek(pos - step)
            chunk = f.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                pos = pos - step + cut + 1
                break
            pos -= step
        f.truncate(pos)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: cut a torn last line (%d bytes) left by a crash",
                path, size - pos)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def record(session_id: str, user_id: str | None, device_id: str | None,
           event: Event, item_id: str | None, dataset: str) -> dict:
    """What rebuilds the event anywhere: the item by id, not position."""
    # Field by field: dataclasses.asdict deep-copies, ~40 us a click.
    data = {f: getattr(event, f) for f in _RECORDED}
    data["filters"] = dict(event.filters) if event.filters else \
        event.filters
    data["item_id"] = item_id
    return {"v": VERSION, "logged_at": time.time(), "dataset": dataset,
            "session_id": session_id, "user_id": user_id,
            "device_id": device_id, "event": data}


def event_of(rec: dict, index: dict[str, int]) -> Event:
    """The Event of a record; fields this code does not know are dropped.

    An item missing from the served catalogue keeps the event, itemless.
    """
    data = {k: v for k, v in rec["event"].items() if k in _EVENT_FIELDS}
    item_id = rec["event"].get("item_id")
    data["item"] = None if item_id is None else index.get(item_id)
    return Event(**data)


def rebuild(records: Iterable[dict], index: dict[str, int],
            store: SessionStore, ttl_s: float, max_events: int,
            apply: Callable[[Session, Event], object] | None = None
            ) -> int:
    """Put the sessions seen within ttl_s back into the store.

    Events are appended as POST /v1/events appends them, `apply` doing
    what the handler does to a session before the append (roles).
    Returns the number of sessions rebuilt.
    """
    sessions: dict[str, Session] = {}
    for rec in records:
        sid = rec["session_id"]
        s = sessions.get(sid) or Session(sid)
        s.user_id = rec.get("user_id") or s.user_id
        s.device_id = rec.get("device_id") or s.device_id
        event = event_of(rec, index)
        if apply is not None:
            apply(s, event)
        s.events = (s.events + [event])[-max_events:]
        s.last_seen = rec["logged_at"]
        sessions[sid] = s
    cutoff = time.time() - ttl_s
    live = sorted((s for s in sessions.values() if s.last_seen >= cutoff),
                  key=lambda s: s.last_seen)
    for s in live:
        store.put(s)  # least recent first, so an LRU cap keeps the latest
    return len(live)
