"""Every client mistake becomes a 4xx with a JSON body that says what was
expected and what was found; anything else is logged once and answered
500 without a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web
from pydantic import ValidationError

from serve.eventlog import EventLogError
from serve.sessions import StoreUnavailable

log = logging.getLogger(__name__)

STORE_RETRY_AFTER_S = 1  # a Redis restart or failover takes seconds
_STORE_WARN_EVERY_S = 10.0
_store_warned = [0.0]  # monotonic time of the last warning


class ApiError(Exception):
    def __init__(self, status: int, error: str, expected: str,
                 found: object = None, details: list | None = None,
                 retry_after: int | None = None):
        super().__init__(error)
        self.status, self.error = status, error
        self.expected, self.found = expected, found
        self.details = details or []
        self.retry_after = retry_after  # seconds, for a 503

    def response(self) -> web.Response:
        body = {"error": self.error, "expected": self.expected,
                "found": None if self.found is None else _short(self.found),
                "details": self.details}
        headers = ({"Retry-After": str(self.retry_after)}
                   if self.retry_after is not None else None)
        return web.json_response(body, status=self.status,
                                 headers=headers)


def _short(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value,
                                                           default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def from_validation(exc: ValidationError) -> ApiError:
    details = [{"field": ".".join(str(p) for p in e["loc"]) or "body",
                "expected": e["msg"], "found": _short(e.get("input"))}
               for e in exc.errors(include_url=False)]
    first = details[0]
    return ApiError(422, "invalid_request",
                    f"{first['field']}: {first['expected']}",
                    first["found"], details)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except ValidationError as exc:
        return from_validation(exc).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return ApiError(exc.status, exc.reason.lower().replace(" ", "_"),
                        "a path and method listed in /openapi.json",
                        f"{request.method} {request.path}").response()
    except StoreUnavailable as exc:
        _warn_store(exc)
        return ApiError(503, "store_unavailable",
                        "a reachable session store: retry after "
                        f"{STORE_RETRY_AFTER_S} s",
                        f"session store unavailable ({exc})",
                        retry_after=STORE_RETRY_AFTER_S).response()
    except EventLogError as exc:
        # Logged by the event log itself, once per failed batch.
        return ApiError(503, "event_log_unavailable",
                        "an event log that can write: the event was not "
                        f"accepted; retry after {STORE_RETRY_AFTER_S} s",
                        str(exc), retry_after=STORE_RETRY_AFTER_S
                        ).response()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected fault on %s %s", request.method,
                      request.path)
        return web.json_response(
            {"error": "internal", "expected": "a request the server can "
             "answer; this fault is logged", "found": None,
             "details": []}, status=500)


def _warn_store(exc: StoreUnavailable) -> None:
    """One line per 10 s, not a traceback per click, while it is away."""
    now = time.monotonic()
    if now - _store_warned[0] >= _STORE_WARN_EVERY_S:
        _store_warned[0] = now
        log.warning("session store unavailable, answering 503: %s", exc)
