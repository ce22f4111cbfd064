"""Catalogue browsing: departments and items of the served bundle.

What a shop front (and the demo page) needs to show articles before the
first click. Read-only; item upserts are `PUT /v1/items`
(serve/live_catalog.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from aiohttp import web
from pydantic import BaseModel

from rolecall.bundle import Bundle
from serve import app as app_keys
from serve.errors import ApiError

log = logging.getLogger(__name__)

MAX_LIMIT = 200
MAX_QUERY = 100
# Shown per item: what a product card needs, and the role attributes.
CARD = ("name", "department", "index_group", "product_type", "colour",
        "gender", "age_group", "size_band")


class ItemOut(BaseModel):
    item_id: str
    name: str | None
    department: str | None
    index_group: str | None
    product_type: str | None
    colour: str | None
    gender: str | None
    age_group: str | None
    size_band: str | None


class ItemsOut(BaseModel):
    items: list[ItemOut]
    total: int
    offset: int
    department: str | None
    index_group: str | None
    q: str | None


class DepartmentOut(BaseModel):
    department: str
    index_group: str | None
    items: int


class DepartmentsOut(BaseModel):
    departments: list[DepartmentOut]


@dataclass
class Catalog:
    """Per bundle: items in the model's prior order, text to search."""

    bundle: Bundle
    order: np.ndarray  # catalogue indexes, likeliest first
    text: list[str]  # lower-cased name, type and colour per item
    departments: list[dict]
    # (department, index group or None) -> indexes in `order`
    by_department: dict[tuple, list[int]]
    changes: int = 0  # the engine's attribute_changes when built

    @classmethod
    def of(cls, bundle: Bundle, changes: int = 0) -> Catalog:
        items = bundle.items
        n = len(bundle.item_ids)
        # The bias column is the model's a-priori appeal of an item;
        # listing by it puts what sells first, as a shop would.
        order = np.argsort(-bundle.item_vectors[:, -1], kind="stable")
        text = [" ".join(filter(None, (items["name"][i],
                                       items["product_type"][i],
                                       items["colour"][i]))).lower()
                for i in range(n)]
        # A department name can recur across index groups (Ladieswear
        # and Menswear both have Accessories): list each pair.
        pairs = Counter(zip(items["index_group"], items["department"]))
        departments = [{"department": d, "index_group": g, "items": c}
                       for (g, d), c in pairs.items() if d]
        departments.sort(key=lambda d: (d["index_group"] or "",
                                        d["department"]))
        by_department: dict[tuple, list[int]] = {}
        for i in order.tolist():
            dep = items["department"][i]
            by_department.setdefault((dep, None), []).append(i)
            by_department.setdefault(
                (dep, items["index_group"][i]), []).append(i)
        return cls(bundle, order, text, departments, by_department,
                   changes)

    def card(self, i: int) -> dict:
        items = self.bundle.items
        card = {"item_id": self.bundle.item_ids[i]}
        card.update({c: items[c][i] if c in items else None
                     for c in CARD})
        return card


# One catalogue per served bundle, rebuilt when the engine's bundle is
# another object (a swap, issue 6), has items added online, or had an
# item's attributes changed (a name or department); building takes
# about a second. Stock and prices do not show here: no rebuild.
_cached: list[Catalog] = []


def catalog(request: web.Request) -> Catalog:
    engine = request.app[app_keys.ENGINE]
    bundle = engine.bundle
    if (not _cached or _cached[0].bundle is not bundle
            or len(_cached[0].text) != len(bundle.item_ids)
            or _cached[0].changes != engine.attribute_changes):
        _cached[:] = [Catalog.of(bundle, engine.attribute_changes)]
        log.info("catalogue of bundle %s: %d departments",
                 bundle.version, len(_cached[0].departments))
    return _cached[0]


def _int(request: web.Request, name: str, default: int, low: int,
         high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(422, f"invalid_{name}",
                       f"{name}: an integer from {low} to {high}", raw)
    return value


async def get_items(request: web.Request) -> web.Response:
    cat = catalog(request)
    limit = _int(request, "limit", 24, 1, MAX_LIMIT)
    offset = _int(request, "offset", 0, 0, len(cat.order))
    department = request.query.get("department") or None
    group = request.query.get("index_group") or None
    q = (request.query.get("q") or "").strip().lower() or None
    if q is not None and len(q) > MAX_QUERY:
        raise ApiError(422, "invalid_q",
                       f"q: a search text of at most {MAX_QUERY} "
                       "characters", q)
    if department is None:
        pool = cat.order.tolist()
    elif (department, group) in cat.by_department:
        pool = cat.by_department[department, group]
    else:
        raise ApiError(404, "unknown_department",
                       "department (and index_group): a pair listed by "
                       "/v1/departments",
                       {"department": department, "index_group": group})
    hits = pool if q is None else [i for i in pool if q in cat.text[i]]
    body = ItemsOut(items=[cat.card(i)
                           for i in hits[offset:offset + limit]],
                    total=len(hits), offset=offset,
                    department=department, index_group=group, q=q)
    return web.json_response(body.model_dump())


async def get_departments(request: web.Request) -> web.Response:
    body = DepartmentsOut(departments=catalog(request).departments)
    return web.json_response(body.model_dump())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/items", get_items)
    app.router.add_get("/v1/departments", get_departments)
