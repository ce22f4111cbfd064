"""Every client mistake becomes a 4xx with a JSON body that says what was
expected and what was found; anything else is logged once and answered
500 without a traceback."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from pydantic import ValidationError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, error: str, expected: str,
                 found: object = None, details: list | None = None):
        super().__init__(error)
        self.status, self.error = status, error
        self.expected, self.found = expected, found
        self.details = details or []

    def response(self) -> web.Response:
        body = {"error": self.error, "expected": self.expected,
                "found": None if self.found is None else _short(self.found),
                "details": self.details}
        return web.json_response(body, status=self.status)


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
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected fault on %s %s", request.method,
                      request.path)
        return web.json_response(
            {"error": "internal", "expected": "a request the server can "
             "answer; this fault is logged", "found": None,
             "details": []}, status=500)
