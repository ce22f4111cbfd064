"""Sessions from DuckDB, split by time into train, validation and test."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from rolecall.config import DataConfig
from rolecall.events import EVENT_INDEX, ITEM_EVENTS
from rolecall.items import Catalog, load_catalog
from train.ingest import connect

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass
class SessionSet:
    """Sessions as arrays of catalogue indices, in event order."""

    items: list[np.ndarray] = field(default_factory=list)
    types: list[np.ndarray] = field(default_factory=list)
    start_ts: list[float] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    user_ids: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def positions(self) -> int:
        """Number of next-item predictions: every item after the first."""
        return sum(max(len(s) - 1, 0) for s in self.items)

    def head(self, n: int) -> SessionSet:
        if n <= 0 or n >= len(self):
            return self
        return SessionSet(self.items[:n], self.types[:n],
                          self.start_ts[:n], self.session_ids[:n],
                          self.user_ids[:n])

    def __add__(self, other: SessionSet) -> SessionSet:
        return SessionSet(self.items + other.items,
                          self.types + other.types,
                          self.start_ts + other.start_ts,
                          self.session_ids + other.session_ids,
                          self.user_ids + other.user_ids)


@dataclass
class SessionData:
    dataset: str
    catalog: Catalog
    train: SessionSet
    valid: SessionSet
    test: SessionSet
    date_range: tuple[str, str]

    def fit_items(self, *splits: str) -> np.ndarray:
        """Catalogue indices seen in the given splits (sorted)."""
        parts = [np.concatenate(getattr(self, s).items or [np.empty(0)])
                 for s in splits]
        return np.unique(np.concatenate(parts)).astype(np.int64)


def _split_expr(cfg: DataConfig) -> str:
    if cfg.split == "source":
        return "any_value(source)"
    if cfg.split == "date":
        # Days are counted back from the dataset's last day.
        return f"""CASE
            WHEN min(ts)::DATE > max_day - {cfg.test_days} THEN 'test'
            WHEN min(ts)::DATE > max_day - {cfg.test_days + cfg.valid_days}
                THEN 'valid'
            ELSE 'train' END"""
    raise ValueError(f"data.split must be 'date' or 'source', "
                     f"found '{cfg.split}'")


def load_sessions(cfg: DataConfig) -> SessionData:
    con = connect(cfg.duckdb_path, read_only=True)
    try:
        catalog = load_catalog(con, cfg.name)
        rows = con.execute(f"""
            WITH bounds AS (
                SELECT max(ts)::DATE AS max_day FROM events
                WHERE dataset = $1
                  AND ($2 OR source IS DISTINCT FROM 'live')),
            sessions AS (
                SELECT session_id, {_split_expr(cfg)} AS split,
                       epoch(min(ts)) AS start_ts,
                       any_value(user_id) AS user_id,
                       list(item_id ORDER BY seq) AS items,
                       list(event_type ORDER BY seq) AS types
                FROM events, bounds
                WHERE dataset = $1 AND item_id IS NOT NULL
                  AND ($2 OR source IS DISTINCT FROM 'live')
                GROUP BY session_id, max_day)
            SELECT * FROM sessions ORDER BY start_ts, session_id
            """, [cfg.name, cfg.include_live]).fetchall()
        lo, hi = con.execute(
            "SELECT min(ts)::VARCHAR, max(ts)::VARCHAR FROM events "
            "WHERE dataset = ?", [cfg.name]).fetchone()
    finally:
        con.close()
    sets = {s: SessionSet() for s in SPLITS}
    for sid, split, ts, user, items, types in rows:
        idx = [catalog.index.get(i) for i in items]
        keep = [j for j, (i, t) in enumerate(zip(idx, types))
                if i is not None and t in ITEM_EVENTS]
        keep = keep[-cfg.max_session_len:]
        target = sets[split]
        target.items.append(np.array([idx[j] for j in keep], np.int64))
        target.types.append(np.array(
            [EVENT_INDEX[types[j]] for j in keep], np.int64))
        target.start_ts.append(float(ts))
        target.session_ids.append(sid)
        target.user_ids.append(user)
    data = SessionData(cfg.name, catalog,
                       sets["train"].head(cfg.max_train_sessions),
                       sets["valid"].head(cfg.max_eval_sessions),
                       sets["test"].head(cfg.max_eval_sessions), (lo, hi))
    log.info("%s sessions: %d train, %d valid, %d test; %d items in "
             "the catalogue, %d seen in training", cfg.name,
             len(data.train), len(data.valid), len(data.test),
             len(catalog), len(data.fit_items("train")))
    return data
