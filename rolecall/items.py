"""Item attributes as integer features for the item tower.

The catalogue order fixes an item's index everywhere (DuckDB rows, the
FAISS index, the bundle). Feature vocabularies are built from the whole
catalogue: attributes are known for every article, sold or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolecall.merch import Business, day_number

FEATURES = ("product_type", "product_group", "appearance", "colour",
            "colour_value", "colour_master", "department", "index_name",
            "index_group", "section", "garment_group", "gender",
            "age_group", "size_band")


@dataclass
class Catalog:
    item_ids: list[str]
    # (n_items, n_fields) ints; 0 means unknown in every field.
    features: np.ndarray
    vocabs: dict[str, list[str]]  # field -> values, index 0 is unknown
    names: list[str | None]
    genders: np.ndarray  # object arrays of role strings or None
    age_groups: np.ndarray
    departments: list[str | None]
    sizes: list[list[str]]  # sizes in stock; empty: one size, fits all
    # Price, margin, stock, arrival, campaigns; all unknown for a
    # dataset without them (rolecall/merch.py).
    business: Business | None = None

    def __post_init__(self):
        self.index = {item: i for i, item in enumerate(self.item_ids)}

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def fields(self) -> list[str]:
        """Fields with at least one known value; others carry nothing."""
        return [f for f in FEATURES if len(self.vocabs.get(f, [])) > 1]

    def field_sizes(self) -> list[int]:
        return [len(self.vocabs[f]) for f in self.fields]

    def encode(self, attrs: dict[str, str | None]) -> np.ndarray:
        """Features of an item described by its attribute values."""
        row = np.zeros(len(self.fields), dtype=np.int64)
        for j, f in enumerate(self.fields):
            vocab = self.vocabs[f]
            value = attrs.get(f)
            row[j] = vocab.index(value) if value in vocab[1:] else 0
        return row


def load_catalog(con, dataset: str) -> Catalog:
    cols = ", ".join(FEATURES)
    rows = con.execute(
        f"SELECT item_id, name, {cols}, sizes FROM items "
        f"WHERE dataset = ? "
        f"ORDER BY item_id", [dataset]).fetchall()
    if not rows:
        raise ValueError(f"no items for dataset '{dataset}' in DuckDB; "
                         "run the ingest stage first")
    item_ids = [r[0] for r in rows]
    values = [r[2:-1] for r in rows]
    vocabs, columns = {}, []
    for j, field in enumerate(FEATURES):
        seen = sorted({v[j] for v in values if v[j] is not None})
        vocabs[field] = [""] + seen
        lookup = {v: i + 1 for i, v in enumerate(seen)}
        columns.append([lookup.get(v[j], 0) for v in values])
    features = np.array(columns, dtype=np.int64).T
    keep = [j for j, f in enumerate(FEATURES) if len(vocabs[f]) > 1]
    g, a = FEATURES.index("gender"), FEATURES.index("age_group")
    catalog = Catalog(
        item_ids=item_ids,
        features=np.ascontiguousarray(features[:, keep]),
        vocabs=vocabs,
        names=[r[1] for r in rows],
        genders=np.array([v[g] for v in values], dtype=object),
        age_groups=np.array([v[a] for v in values], dtype=object),
        departments=[v[FEATURES.index("department")] for v in values],
        sizes=[r[-1].split(",") if r[-1] else [] for r in rows])
    catalog.business = load_business(con, dataset, item_ids)
    return catalog


def load_business(con, dataset: str, item_ids: list[str]) -> Business:
    """The item_business rows in catalogue order; unknown where none."""
    business = Business.empty(len(item_ids))
    has_table = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = 'item_business'").fetchone()[0]
    if not has_table:  # a DuckDB file ingested before issue 5
        return business
    index = {item: i for i, item in enumerate(item_ids)}
    rows = con.execute(
        "SELECT item_id, price, margin, stock, arrival, campaigns "
        "FROM item_business WHERE dataset = ?", [dataset]).fetchall()
    for item, price, margin, stock, arrival, tags in rows:
        i = index.get(item)
        if i is None:
            continue
        business.price[i] = np.nan if price is None else price
        business.margin[i] = np.nan if margin is None else margin
        business.stock[i] = None if stock is None else dict(stock)
        business.arrival[i] = day_number(arrival)
        business.campaigns[i] = list(tags or [])
    return business
