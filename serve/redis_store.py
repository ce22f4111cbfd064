"""Sessions in Redis, shared by every server process and host.

Each session is one JSON value (Session.to_dict) under
`<prefix>s:<session_id>` that expires session_ttl_s after its last
event; a sorted set of last-seen times answers len() without a scan.

The client is synchronous, like MemoryStore: a loopback round trip is
a few tens of microseconds, small beside the per-click model work that
already runs on the event loop (moving both to a pool is issue 7).
Two processes updating one session at the same instant keep the later
write; a visitor's clicks arrive one after another, so this is rare.

A lost Redis fails each call fast (timeout_s per try, one immediate
retry that also heals a pooled connection broken by a restart) and
raises StoreUnavailable, which the app answers 503 with Retry-After;
the pool reconnects by itself once Redis is back.
"""

from __future__ import annotations

import functools
import json
import logging
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from serve.sessions import Session, StoreUnavailable

log = logging.getLogger(__name__)


def _loss_is_unavailable(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return call


class RedisStore:
    def __init__(self, url: str, ttl_s: float = 86_400.0,
                 prefix: str = "rolecall:", timeout_s: float = 0.5):
        # redis-py's default retries thrice with backoff of up to
        # seconds: behind a dead Redis every click would wait that long.
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1))
        self.ttl_ms = max(int(ttl_s * 1000), 1)
        self.prefix = prefix
        self._seen = f"{prefix}seen"

    def ping(self) -> None:
        """Fail at start, not at the first click, if Redis is away."""
        self.client.ping()

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    @_loss_is_unavailable
    def get(self, session_id: str) -> Session | None:
        raw = self.client.get(self._key(session_id))
        return None if raw is None else Session.from_dict(json.loads(raw))

    @_loss_is_unavailable
    def put(self, session: Session) -> None:
        value = json.dumps(session.to_dict(), separators=(",", ":"))
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key(session.session_id), value, px=self.ttl_ms)
        pipe.zadd(self._seen, {session.session_id: now})
        # Expired sessions leave the count in the same round trip.
        pipe.zremrangebyscore(self._seen, "-inf",
                              now - self.ttl_ms / 1000)
        pipe.execute()

    @_loss_is_unavailable
    def delete(self, session_id: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self._key(session_id))
        pipe.zrem(self._seen, session_id)
        pipe.execute()

    @_loss_is_unavailable
    def items(self) -> list[tuple[str, Session]]:
        """Every live session; a scan, for admin calls such as forget."""
        out = []
        for key in self.client.scan_iter(match=self._key("*"), count=500):
            raw = self.client.get(key)
            if raw is not None:
                session = Session.from_dict(json.loads(raw))
                out.append((session.session_id, session))
        return out

    @_loss_is_unavailable
    def __len__(self) -> int:
        cutoff = time.time() - self.ttl_ms / 1000
        return int(self.client.zcount(self._seen, cutoff, "+inf"))

    def close(self) -> None:
        self.client.close()
