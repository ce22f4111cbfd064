"""The OpenAPI description against the real app: same routes, and real
answers (errors included) valid under the described schemas."""

import copy
import re

import jsonschema
import pytest

from serve.app import make_app
from serve.openapi import document




def _strict(schema):
    """Undeclared fields fail too: a handler that adds a field must say
    so in its model."""
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    root = {**schema,
            "components": _strict(copy.deepcopy(document()["components"]))}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def test_every_route_is_described_and_every_description_routed(
        tiny_cfg, engine):
    app = make_app(tiny_cfg, engine)
    routes = {(r.method.lower(), r.resource.canonical)
              for r in app.router.routes()}
    # aiohttp adds HEAD beside every GET; HTTP defines it as GET
    # without a body, so the description needs no entry for it.
    routes = {(m, p) for m, p in routes
              if m != "head" or ("get", p) not in routes}
    described = {(m, p) for p, ops in document()["paths"].items()
                 for m in ops}
    assert routes - described == set(), "routes not in /openapi.json"
    assert described - routes == set(), "described but not routed"


def _women(engine):
    return next(engine.bundle.item_ids[i] for i in engine.popular
                if engine.genders[i] == "women")


def _calls(engine, department):
    item = _women(engine)
    event = {"session_id": "o1", "event_type": "click", "item_id": item}
    json_body = {"headers": {"Content-Type": "application/json"}}
    return [
        ("post", "/v1/events", "/v1/events", {"json": event}),
        ("post", "/v1/events", "/v1/events",
         {"json": {"session_id": "o1", "event_type": "filter",
                   "filters": {"size": "M", "gender": "men"}}}),
        ("post", "/v1/events", "/v1/events",
         {"data": "{oops", **json_body}),
        ("post", "/v1/events", "/v1/events",
         {"data": b"{" + b" " * 70000 + b"}", **json_body}),
        ("post", "/v1/events", "/v1/events",
         {"data": "x", "headers": {"Content-Type": "text/plain"}}),
        ("post", "/v1/events", "/v1/events",
         {"json": {"session_id": "o1", "item_id": "0000000000"}}),
        ("get", "/v1/recommendations", "/v1/recommendations",
         {"params": {"session_id": "o1", "k": "5"}}),
        ("get", "/v1/recommendations", "/v1/recommendations",
         {"params": {"k": "5"}}),
        ("post", "/v1/sessions/{session_id}/identify",
         "/v1/sessions/o1/identify", {"json": {"user_id": "c-1"}}),
        ("post", "/v1/sessions/{session_id}/identify",
         "/v1/sessions/o1/identify", {"json": {"user": "c-1"}}),
        ("post", "/v1/sessions/{session_id}/logout",
         "/v1/sessions/o1/logout", {}),
        ("post", "/v1/sessions/{session_id}/logout",
         "/v1/sessions/nobody/logout", {}),
        ("delete", "/v1/customers/{user_id}", "/v1/customers/c-1", {}),
        ("post", "/v1/admin/bundle", "/v1/admin/bundle",
         {"json": {"path": "/nowhere"}}),
        ("get", "/v1/items", "/v1/items",
         {"params": {"department": department, "limit": "3"}}),
        ("get", "/v1/items", "/v1/items",
         {"params": {"department": department, "limit": "3",
                     "index_group": "Menswear"}}),
        ("get", "/v1/items", "/v1/items",
         {"params": {"q": "denim", "limit": "2", "offset": "1"}}),
        ("get", "/v1/items", "/v1/items",
         {"params": {"department": "No Such Department"}}),
        ("get", "/v1/items", "/v1/items", {"params": {"limit": "0"}}),
        ("put", "/v1/items", "/v1/items",  # no admin token set: 403
         {"json": {"items": [{"item_id": item, "stock": {"M": 0}}]}}),
        ("get", "/v1/recommendations", "/v1/recommendations",
         {"params": {"session_id": "o1", "k": "3", "price_max": "0.02",
                     "product_type": "Trousers"}}),
        ("get", "/v1/recommendations", "/v1/recommendations",
         {"params": {"session_id": "o1", "price_max": "cheap"}}),
        ("get", "/v1/departments", "/v1/departments", {}),
        ("get", "/healthz", "/healthz", {}),
        ("get", "/v1/ping", "/v1/ping", {}),
        ("get", "/metrics", "/metrics", {}),
        ("get", "/openapi.json", "/openapi.json", {}),
        ("get", "/demo", "/demo", {}),
        ("get", "/demo/{file}", "/demo/demo.js", {}),
        ("get", "/demo/{file}", "/demo/app.py", {}),
    ]


async def test_real_answers_match_the_described_schemas(client, engine):
    doc = document()
    department = engine.bundle.items["department"][engine.popular[0]]
    exercised = set()
    for method, template, path, kwargs in _calls(engine, department):
        op = doc["paths"][template][method]
        r = await getattr(client, method)(path, **kwargs)
        if r.status == 200 and "requestBody" in op:
            # What the handler took, the description must accept.
            schema = op["requestBody"]["content"]["application/json"]
            _validator(schema["schema"]).validate(kwargs["json"])
        described = op["responses"].get(str(r.status))
        assert described, f"{method} {path}: {r.status} not described"
        spec = described["content"].get(r.content_type)
        assert spec, f"{method} {path}: {r.content_type} not described"
        if r.content_type == "application/json":
            _validator(spec["schema"]).validate(await r.json())
        exercised.add((method, template, r.status))
    ops = {(m, p) for p, o in doc["paths"].items() for m in o}
    assert {(m, p) for m, p, _ in exercised} == ops
    statuses = {s for _, _, s in exercised}
    assert {200, 400, 404, 413, 415, 422} <= statuses


async def test_unknown_fields_in_an_answer_fail_validation():
    schema = document()["paths"]["/healthz"]["get"]["responses"]["200"]
    body = {"status": "ok", "bundle": "b", "items": 1, "lookalikes": 1,
            "sessions": 0, "uptime_s": 1.0}
    validator = _validator(schema["content"]["application/json"]["schema"])
    validator.validate(body)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**body, "undeclared": 1})


async def test_openapi_is_served_and_is_3_1(client):
    r = await client.get("/openapi.json")
    body = await r.json()
    assert r.status == 200 and body["openapi"].startswith("3.1")
    assert body == document()


async def test_metrics_have_latency_histograms_per_endpoint(client,
                                                            engine):
    await client.post("/v1/events", json={"session_id": "m1",
                                          "item_id": _women(engine)})
    await client.get("/v1/departments")
    await client.get("/v1/items", params={"limit": "0"})
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    for endpoint in ("/v1/events", "/v1/departments", "/v1/items",
                     "/healthz"):
        buckets = re.findall(
            r'^rolecall_request_seconds_bucket\{endpoint="'
            + re.escape(endpoint) + r'",le="([^"]+)"\} (\S+)$',
            text, re.M)
        assert len(buckets) >= 5, endpoint
        assert buckets[-1][0] == "+Inf" and float(buckets[-1][1]) >= 1
        counts = [float(c) for _, c in buckets]
        assert counts == sorted(counts)  # cumulative, as Prometheus has


def test_admin_operations_declare_the_bearer_token():
    from serve.openapi import document
    doc = document()
    assert doc["components"]["securitySchemes"]["adminToken"][
        "scheme"] == "bearer"
    secured = {(path, method) for path, ops in doc["paths"].items()
               for method, op in ops.items() if "security" in op}
    assert secured == {("/v1/customers/{user_id}", "delete"),
                       ("/v1/admin/bundle", "post"),
                       ("/v1/items", "put")}
