"""The live catalogue: `PUT /v1/items` upserts items (admin token).

A body names items by id with any of their attributes (name, product
type, colour, department, index group, gender, age group, ...) and
business data (price, margin, stock per size, arrival, campaigns). A
known item changes only the fields given (stock merges per size: sizes
not named keep their units); an unknown one is new and is embedded
from its attributes (Engine.add_items). The next request sees it all.

Durability: every accepted body is appended to serve.catalog_log_path
(JSON lines) and fsync'ed before it is applied and answered; the log is
replayed on every load and bundle swap, before the event log, so a
restart keeps the changes and sessions that clicked a new item keep
it. Training learns new items once they are in DuckDB's items table;
the log is not ingested yet (README, "not supported yet").

The whole body is validated before anything changes: a bad body gets
a 4xx and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from rolecall.items import FEATURES
from rolecall.merch import day_number
from serve import admin_routes
from serve import app as app_keys
from serve.engine import Engine
from serve.errors import ApiError, from_validation
from serve.requests import read_json
from serve.schemas import ItemsChangedOut, ItemsIn

log = logging.getLogger(__name__)

ATTRIBUTES = ("name", *FEATURES)


def add_routes(app: web.Application) -> None:
    app.router.add_put("/v1/items", put_items)


def parse(raw: object) -> list[dict]:
    """The body's items as dicts of the fields given; ApiError if bad."""
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_request",
                       "a JSON object {\"items\": [{\"item_id\": ...}]}",
                       type(raw).__name__)
    try:
        body = ItemsIn.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
    rows = [it.model_dump(mode="json", exclude_unset=True)
            for it in body.items]
    ids = [r["item_id"] for r in rows]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ApiError(422, "duplicate_item",
                       "each item_id at most once per request", twice)
    return rows


def apply(engine: Engine, rows: list[dict]) -> list[dict]:
    """Apply validated rows to the engine; returns what became of each."""
    new = [r for r in rows if r["item_id"] not in engine.index]
    unknown = dict(zip(
        (r["item_id"] for r in new),
        engine.add_items([_pick(r, ATTRIBUTES, "item_id") for r in new])
        if new else []))
    touched = []
    for r in rows:
        i = engine.index[r["item_id"]]
        if r["item_id"] not in unknown:
            engine.set_attributes(i, _pick(r, ATTRIBUTES))
        _set_business(engine, i, r)
        touched.append(i)
    engine.refresh(touched)
    return [{"item_id": r["item_id"], "created": r["item_id"] in unknown,
             "in_stock": bool(engine.in_stock[i]),
             "unknown_attributes": unknown.get(r["item_id"], [])}
            for r, i in zip(rows, touched)]


def _pick(row: dict, fields: tuple[str, ...], *extra: str) -> dict:
    return {f: row[f] for f in (*extra, *fields) if f in row}


def _set_business(engine: Engine, i: int, row: dict) -> None:
    b = engine.business
    if "price" in row:
        b.price[i] = float("nan") if row["price"] is None else row["price"]
    if "margin" in row:
        b.margin[i] = (float("nan") if row["margin"] is None
                       else row["margin"])
    if "stock" in row:
        stock = row["stock"]
        b.stock[i] = (None if stock is None
                      else {**(b.stock[i] or {}), **stock})
    if "arrival" in row:
        b.arrival[i] = day_number(row["arrival"])
    if "campaigns" in row:
        b.campaigns[i] = list(row["campaigns"] or [])


async def put_items(request: web.Request) -> web.Response:
    admin_routes.require_admin(request)
    rows = parse(await read_json(request))
    app = request.app
    path = app[app_keys.CONFIG].serve.catalog_log_path
    # One lock with bundle swaps: a swap replays the log, and must not
    # miss a change logged while it loaded.
    async with app[admin_routes.SWAP_LOCK]:
        engine = app[app_keys.ENGINE]
        if path:
            record = {"ts": time.time(), "dataset": _dataset(engine),
                      "items": rows}
            await asyncio.to_thread(append, Path(path), record)
        done = apply(engine, rows)
    log.info("catalogue: %d items changed, %d new", len(done),
             sum(d["created"] for d in done))
    body = ItemsChangedOut(items=done,
                           catalog_items=len(engine.bundle.item_ids),
                           logged=bool(path))
    return web.json_response(body.model_dump())


def _dataset(engine: Engine) -> str:
    return engine.bundle.config["data"]["name"]


def append(path: Path, record: dict) -> None:
    """One line, on disk (fsync'ed) before the change counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def replay(engine: Engine, path: str) -> int:
    """Apply the log's changes for the engine's dataset, in order.

    A line that does not parse (a crash mid-write leaves at most the
    last one torn) is skipped with a warning; it was never answered.
    """
    if not path or not Path(path).is_file():
        return 0
    started, n = time.perf_counter(), 0
    dataset = _dataset(engine)
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
                if record.get("dataset") != dataset:
                    continue
                rows = parse({"items": record["items"]})
            except (json.JSONDecodeError, KeyError, TypeError,
                    ApiError) as exc:
                log.warning("%s:%d: skipped, not a catalogue change (%s)",
                            path, number, exc)
                continue
            apply(engine, rows)
            n += len(rows)
    log.info("catalogue log %s: %d item changes replayed (%.1fs)", path,
             n, time.perf_counter() - started)
    return n
