"""Business data per item and the signals merchandisers weight.

Per item: price, margin (a share of the price), units in stock per
size, arrival day and campaign tags. Ingest holds them in DuckDB (for
H&M the price is real, the rest simulated: train/ingest.py), export
writes them into the bundle (business.json), the engine turns them into
a hard filter (stock) and four ranking signals, and the live catalogue
(serve/live_catalog.py) changes them online.

Every field may be unknown (None or NaN). An item whose stock is unknown
counts as in stock, so datasets without business data (YooChoose,
Diginetica) and bundles exported before it existed serve as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

ONE_SIZE = "one size"  # the stock key of an item sold without sizes
SIGNALS = ("margin", "new_arrival", "campaign", "stock")
_EPOCH = date(1970, 1, 1)


def day_number(value: str | date | None) -> float:
    """Days since 1970-01-01 of an ISO date; NaN when unknown."""
    if value is None or value == "":
        return np.nan
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return float((value - _EPOCH).days)


def iso_day(days: float) -> str | None:
    if np.isnan(days):
        return None
    return date.fromordinal(_EPOCH.toordinal() + int(days)).isoformat()


@dataclass
class Business:
    price: np.ndarray  # (n,) float64, NaN unknown
    margin: np.ndarray  # (n,) share of the price in [0, 1], NaN unknown
    stock: list[dict[str, int] | None]  # units per size; None unknown
    arrival: np.ndarray  # (n,) days since 1970-01-01, NaN unknown
    campaigns: list[list[str]]

    @classmethod
    def empty(cls, n: int) -> Business:
        return cls(np.full(n, np.nan), np.full(n, np.nan), [None] * n,
                   np.full(n, np.nan), [[] for _ in range(n)])

    @classmethod
    def from_columns(cls, cols: dict, n: int) -> Business:
        """From business.json's columns (JSON nulls for unknowns)."""
        def floats(name):
            return np.array([np.nan if x is None else float(x)
                             for x in cols[name]], dtype=np.float64)
        out = cls(floats("price"), floats("margin"),
                  [None if s is None else {str(k): int(v)
                                           for k, v in s.items()}
                   for s in cols["stock"]],
                  np.array([day_number(d) for d in cols["arrival"]]),
                  [list(c or []) for c in cols["campaigns"]])
        if len(out) != n:
            raise ValueError(f"business data for {len(out)} items, "
                             f"expected {n}")
        return out

    def columns(self) -> dict[str, list]:
        """JSON-ready columns, catalogue order."""
        def nulls(a):
            return [None if np.isnan(x) else float(x) for x in a]
        return {"price": nulls(self.price), "margin": nulls(self.margin),
                "stock": self.stock,
                "arrival": [iso_day(d) for d in self.arrival],
                "campaigns": self.campaigns}

    def __len__(self) -> int:
        return len(self.stock)

    def extend(self, n: int) -> None:
        """n more items, all unknown."""
        more = Business.empty(n)
        self.price = np.concatenate([self.price, more.price])
        self.margin = np.concatenate([self.margin, more.margin])
        self.arrival = np.concatenate([self.arrival, more.arrival])
        self.stock += more.stock
        self.campaigns += more.campaigns

    def units(self, i: int) -> float:
        """Units in stock over all sizes; NaN when unknown."""
        s = self.stock[i]
        return np.nan if s is None else float(sum(s.values()))

    def in_stock(self, i: int) -> bool:
        s = self.stock[i]
        return s is None or any(n > 0 for n in s.values())

    def sizes_in_stock(self, i: int) -> list[str] | None:
        """Sizes with units left; None when stock is unknown, [] for an
        item sold without sizes (it fits everyone)."""
        s = self.stock[i]
        if s is None:
            return None
        return [k for k, n in s.items() if n > 0 and k != ONE_SIZE]


@dataclass
class SignalParams:
    """What turns business data into signals (from RankingConfig)."""

    new_arrival_days: int
    as_of: float  # day number newness is measured from
    campaign_tags: frozenset[str]
    stock_full: int


def signals(b: Business, idx: np.ndarray, p: SignalParams) -> np.ndarray:
    """(len(idx), 4) signals in [0, 1], columns in SIGNALS order.

    margin: the margin share; new_arrival: 1 on the arrival day, falling
    linearly to 0 after new_arrival_days; campaign: 1 when tagged with
    an active campaign; stock: units / stock_full, capped at 1 (stock
    pressure: much stock left). Unknown values give 0.
    """
    idx = np.asarray(idx, dtype=np.int64)
    out = np.zeros((len(idx), len(SIGNALS)))
    out[:, 0] = np.clip(np.nan_to_num(b.margin[idx]), 0.0, 1.0)
    age = p.as_of - b.arrival[idx]
    fresh = 1.0 - age / max(p.new_arrival_days, 1)
    out[:, 1] = np.clip(np.nan_to_num(fresh, nan=0.0), 0.0, 1.0)
    if p.campaign_tags:
        out[:, 2] = [bool(p.campaign_tags.intersection(b.campaigns[i]))
                     for i in idx]
    units = np.array([b.units(i) for i in idx]) if len(idx) else \
        np.zeros(0)
    out[:, 3] = np.clip(np.nan_to_num(units) / max(p.stock_full, 1),
                        0.0, 1.0)
    return out
