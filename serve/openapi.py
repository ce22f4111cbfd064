"""The API's OpenAPI 3.1 description, served at `GET /openapi.json`.

Bodies come from the pydantic models (their JSON Schema is the 2020-12
dialect OpenAPI 3.1 uses); paths come from the table below, which
tests/test_openapi.py holds against the routes the app registers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import version

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serve.catalog_routes import DepartmentsOut, ItemsOut
from serve.overload import NEVER_SHED
from serve.schemas import (ErrorOut, EventIn, EventOut, ItemsChangedOut,
                           ItemsIn, RecommendationsOut)

log = logging.getLogger(__name__)

REF = "#/components/schemas/{model}"


class HealthOut(BaseModel):
    """What `GET /healthz` answers while the bundle is served."""

    status: str
    bundle: str
    items: int
    lookalikes: int
    sessions: int
    uptime_s: float


class PingOut(BaseModel):
    """`GET /v1/ping` does no work: the latency floor for benchmarks."""

    ok: bool


# Answers of routes whose modules declare no response model of their
# own; described here so that tests/test_openapi.py holds them to it.
class IdentifyOut(RecommendationsOut):
    linked: bool
    history_events: int


class LogoutOut(RecommendationsOut):
    logged_out: str | None


class ForgetOut(BaseModel):
    user_id: str
    removed: dict[str, int]


class BundleIn(BaseModel):
    path: str


class BundleSwapOut(BaseModel):
    bundle: str
    path: str
    previous: str


@dataclass
class Param:
    name: str
    schema: dict
    where: str = "query"
    required: bool = False
    about: str = ""


@dataclass
class Op:
    method: str
    path: str
    summary: str
    ok: type[BaseModel] | str | tuple[str, ...]  # model or media types
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | Callable[[], type[BaseModel]] | None = None
    params: list[Param] = field(default_factory=list)


_SID = Param("session_id", {"type": "string", "minLength": 1,
                           "maxLength": 128}, where="path", required=True)
_ADMIN = (401, 403)
_K = Param("k", {"type": "integer", "minimum": 1},
           about="how many recommendations (default from config)")
# The request's own filters (serve.schemas.WhereIn), as query parameters.
_WHERE = [
    Param("price_min", {"type": "number", "minimum": 0},
          about="only items priced at least this"),
    Param("price_max", {"type": "number", "minimum": 0},
          about="only items priced at most this (unknown prices fail)"),
    Param("product_type", {"type": "string", "maxLength": 128},
          about="only this product type"),
    Param("department", {"type": "string", "maxLength": 128},
          about="only this department"),
    Param("campaign", {"type": "string", "maxLength": 64},
          about="only items tagged with this campaign"),
]


def _identify_in() -> type[BaseModel]:
    # Imported late: handlers import this module, and identity_routes
    # imports (through admin_routes) handlers.
    from serve.identity_routes import IdentifyIn
    return IdentifyIn


OPS = [
    Op("post", "/v1/events", "Record one event; answer with fresh "
       "recommendations, the active role and a reason per item",
       EventOut, (400, 413, 415, 422), body=EventIn),
    Op("get", "/v1/recommendations", "Recommendations for a session "
       "without a new event", RecommendationsOut, (422,),
       params=[Param("session_id", {"type": "string", "minLength": 1,
                                    "maxLength": 128}, required=True),
               _K, *_WHERE]),
    Op("post", "/v1/sessions/{session_id}/identify", "Link the session "
       "to a customer; answer with recommendations using their history",
       IdentifyOut, (400, 413, 415, 422), body=_identify_in, params=[_SID]),
    Op("post", "/v1/sessions/{session_id}/logout", "Unlink the session "
       "from its customer from here on", LogoutOut, (404, 422),
       params=[_SID]),
    Op("delete", "/v1/customers/{user_id}", "Forget a customer "
       "everywhere (admin)", ForgetOut, _ADMIN,
       params=[Param("user_id", {"type": "string"}, where="path",
                     required=True)]),
    Op("post", "/v1/admin/bundle", "Swap to another artifact bundle "
       "(admin)", BundleSwapOut, (*_ADMIN, 400, 409, 415, 422),
       body=BundleIn),
    Op("get", "/v1/items", "Browse the catalogue, likeliest first",
       ItemsOut, (404, 422),
       params=[Param("department", {"type": "string"},
                     about="a name from /v1/departments"),
               Param("index_group", {"type": "string"},
                     about="narrows a department name shared by groups"),
               Param("q", {"type": "string", "maxLength": 100},
                     about="text in name, product type or colour"),
               Param("limit", {"type": "integer", "minimum": 1,
                               "maximum": 200}),
               Param("offset", {"type": "integer", "minimum": 0})]),
    Op("put", "/v1/items", "Upsert catalogue items: attributes, price, "
       "margin, stock per size, arrival, campaigns; a new item is "
       "embedded from its attributes and recommendable at once (admin)",
       ItemsChangedOut, (*_ADMIN, 400, 413, 415, 422), body=ItemsIn),
    Op("get", "/v1/departments", "Departments with their index group "
       "and item count", DepartmentsOut),
    Op("get", "/healthz", "Liveness and the bundle served", HealthOut),
    Op("get", "/v1/ping", "No work: the server's latency floor",
       PingOut),
    Op("get", "/metrics", "Prometheus metrics", "text/plain"),
    Op("get", "/openapi.json", "This description", "application/json"),
    Op("get", "/demo", "The demo shop page", "text/html"),
    Op("get", "/demo/{file}", "The demo page's script and style",
       ("text/javascript", "text/css"), (404,),
       params=[Param("file", {"type": "string"}, where="path",
                     required=True)]),
]


def _content(ok: type[BaseModel] | str | tuple[str, ...],
             refs: dict) -> dict:
    if isinstance(ok, str):
        ok = (ok,)
    if isinstance(ok, tuple):
        return {media: {"schema": {"type": "object"}
                        if media.endswith("json") else {"type": "string"}}
                for media in ok}
    return {"application/json": {"schema": refs[ok]}}


def _operation(op: Op, refs: dict) -> dict:
    responses = {"200": {"description": "OK",
                         "content": _content(op.ok, refs)}}
    for status in (*op.errors, 500):
        responses[str(status)] = {
            "description": "an error saying what was expected and what "
                           "was found",
            "content": _content(ErrorOut, refs)}
    if op.path not in NEVER_SHED:
        responses["503"] = {
            "description": "past capacity, or the session store is "
                           "unavailable: retry after Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": _content(ErrorOut, refs)}
    out: dict = {"summary": op.summary, "responses": responses}
    if op.params:
        out["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required,
             "schema": p.schema, **({"description": p.about}
                                    if p.about else {})}
            for p in op.params]
    if op.body is not None:
        out["requestBody"] = {"required": True,
                              "content": _content(op.body, refs)}
    if set(_ADMIN) <= set(op.errors):
        out["security"] = [{"adminToken": []}]
    return out


@functools.cache
def document() -> dict:
    """The whole description; built once, it depends on code only."""
    ops = [replace(op, body=op.body())
           if op.body is not None and not isinstance(op.body, type)
           else op for op in OPS]
    bodies = {op.body for op in ops if op.body is not None}
    answers = {op.ok for op in ops
               if not isinstance(op.ok, (str, tuple))}
    answers.add(ErrorOut)
    models = [(m, "validation") for m in bodies]
    models += [(m, "serialization") for m in answers - bodies]
    keys, schemas = models_json_schema(models, ref_template=REF)
    refs = {m: keys[(m, mode)] for m, mode in models}
    paths: dict[str, dict] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {"openapi": "3.1.0",
            "info": {"title": "rolecall", "version": version("rolecall"),
                     "description": "Real-time, role-aware session "
                                    "recommendations for a fashion shop"},
            "paths": paths,
            "components": {
                "schemas": schemas.get("$defs", {}),
                "securitySchemes": {"adminToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "ROLECALL_ADMIN_TOKEN or "
                                   "serve.admin_token"}}}}


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", get_openapi)
