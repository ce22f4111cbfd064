"""What every JSON endpoint shares: reading the body, ids, k, and the
shape of an answer. Its own module so that route modules can use it
without importing each other."""

from __future__ import annotations

import json
import re
import zlib

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from serve import app as app_keys
from serve.engine import Answer, Engine, Where
from serve.errors import ApiError, from_validation
from serve.schemas import ID_PATTERN, WhereIn
from serve.sessions import Session


def valid_id(value: str | None) -> bool:
    return bool(value) and len(value) <= 128 and bool(
        re.fullmatch(ID_PATTERN, value))


async def read_json(request: web.Request) -> object:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       "Content-Type: application/json",
                       request.content_type)
    try:
        raw = await request.read()
    except (zlib.error, ContentEncodingError,
            RequestPayloadError) as exc:
        raise ApiError(400, "undecodable_body",
                       "a body that matches its Content-Encoding",
                       request.headers.get("Content-Encoding")) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.app._client_max_size
        raise ApiError(413, "body_too_large",
                       f"a body of at most {limit} bytes",
                       f"{request.content_length} bytes") from exc
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", "a JSON object",
                       raw[:200].decode("utf-8", "replace")) from exc
    except RecursionError as exc:  # a few KiB of "[[[[" get here
        raise ApiError(400, "malformed_json",
                       "a JSON object nested a few levels deep",
                       "nesting deeper than the parser's limit") from exc


WHERE_PARAMS = ("price_min", "price_max", "product_type", "department",
                "campaign")


def where_of(body: WhereIn | None) -> Where | None:
    return Where(**body.model_dump()) if body is not None else None


def parse_where(request: web.Request) -> Where | None:
    """The request filters of a query string (WhereIn's fields)."""
    given = {p: request.query[p] for p in WHERE_PARAMS
             if p in request.query}
    if not given:
        return None
    try:
        return where_of(WhereIn.model_validate_strings(given))
    except ValidationError as exc:
        raise from_validation(exc) from None


def parse_k(request: web.Request, value: int | str | None) -> int:
    cfg = request.app[app_keys.CONFIG].serve
    if value is None:
        return cfg.default_k
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = 0
    if not 1 <= k <= cfg.max_k:
        raise ApiError(422, "invalid_k",
                       f"k: an integer from 1 to {cfg.max_k}", str(value))
    return k


def answer_body(engine: Engine, session: Session, answer: Answer,
                 timing: dict[str, float]) -> dict:
    recs = []
    # Looked up once: a default list per item cost 4 ms a click.
    departments = engine.bundle.items.get("department")
    for a in answer.items:
        recs.append({
            "item_id": engine.bundle.item_ids[a.item],
            "name": engine.names[a.item],
            # Unrounded: the parts add up to the score exactly.
            "score": a.score,
            "parts": {"model": a.model, "lookalikes": a.lookalikes,
                      "history": a.history, "business": a.business},
            "reason": a.reason,
            "gender": engine.genders[a.item],
            "age_group": engine.ages[a.item],
            "department": departments[a.item] if departments else None,
            "lookalike_sessions": a.voters,
            "evidence": a.evidence, "backfill": a.backfill})
    return {"session_id": session.session_id, "user_id": session.user_id,
            "role": answer.role.as_dict() if answer.role else None,
            "roles_seen": [{"key": key, **ctx}
                           for key, ctx in session.roles.items()],
            "events": len(session.events), "recommendations": recs,
            "bundle": engine.version, "timing_ms": timing}
