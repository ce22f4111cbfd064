"""Business data and the ranking step's parts, by hand, on ingested
DuckDB and on the tiny bundle; the accuracy-against-margin table."""

import duckdb
import numpy as np
import pytest

from rolecall.config import MerchConfig
from rolecall.merch import (Business, SignalParams, day_number, iso_day,
                            signals)
from rolecall.scoring import diverse
from train.merch_eval import business_value, choose_weight, MerchRow


def test_diverse_caps_groups_and_reports_what_it_passed_over():
    groups = np.array([0, 0, 1, 0, -1, 1, 2])
    counts = {}
    taken, capped = diverse(np.array([0, 1, 3, 2, 4, 5, 6]), groups, 4,
                            2, counts)
    # items 0, 1 (group 0 twice), 3 passed over, 2 (group 1), 4 (none)
    assert taken == [0, 1, 3, 4] and capped == [2]
    assert counts == {0: 2, 1: 1, -1: 1}
    taken, capped = diverse([3, 5, 6], groups, 2, 2, counts, skip={5})
    assert taken == [2] and capped == [0]  # 3 capped, 5 skipped, 6 taken
    assert diverse(np.arange(7), groups, 3, 0, {})[0] == [0, 1, 2]


def test_signals_by_hand():
    b = Business.empty(3)
    b.margin[:] = [0.5, np.nan, 1.2]
    b.arrival[:] = [day_number("2020-09-22"), day_number("2020-09-07"),
                    day_number("2020-01-01")]
    b.stock = [{"S": 10, "M": 15}, None, {"one size": 100}]
    b.campaigns = [["autumn-edit"], [], ["clearance", "autumn-edit"]]
    p = SignalParams(30, day_number("2020-09-22"),
                     frozenset({"autumn-edit"}), 50)
    s = signals(b, np.arange(3), p)
    assert s.tolist() == [[0.5, 1.0, 1.0, 0.5],
                          [0.0, 0.5, 0.0, 0.0],
                          [1.0, 0.0, 1.0, 1.0]]
    assert [b.in_stock(i) for i in range(3)] == [True, True, True]
    b.stock[0] = {"S": 0, "M": 0}
    assert not b.in_stock(0) and b.sizes_in_stock(0) == []
    assert b.sizes_in_stock(1) is None and b.sizes_in_stock(2) == []
    again = Business.from_columns(b.columns(), 3)
    assert again.columns() == b.columns()
    assert iso_day(day_number("2020-09-07")) == "2020-09-07"


def test_business_value_and_weight_choice_by_hand():
    margin = np.array([0.2, 0.4, np.nan, 0.8])
    price = np.array([10.0, 20.0, 5.0, np.nan])
    assert business_value([0, 1, 2], 1, margin, price) == pytest.approx(
        (0.2, 8.0))
    assert business_value([0, 3], 2, margin, price) == (0.5, 0.0)
    rows = [MerchRow(w, hr, 0, 0, 0, 1) for w, hr in
            ((0.0, 0.10), (0.1, 0.099), (0.5, 0.0979), (1.0, 0.09))]
    assert choose_weight(rows, 0.02) == 0.1
    assert choose_weight(rows, 0.03) == 0.5


def test_ingested_business_data_is_real_where_it_can_be(db_path):
    con = duckdb.connect(str(db_path), read_only=True)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    assert q("SELECT count(*), count(DISTINCT item_id) FROM "
             "item_business WHERE dataset = 'hm'") == [(105542, 105542)]
    # Real: the median purchase price of each article sold that week.
    assert q("""
        SELECT count(*) FROM item_business b JOIN (
            SELECT item_id, median(price) AS p FROM events
            WHERE dataset = 'hm' GROUP BY item_id) e USING (item_id)
        WHERE b.dataset = 'hm' AND (b.price_source <> 'sales'
              OR abs(b.price - e.p) > 1e-12)""") == [(0,)]
    assert q("SELECT count(*) FROM item_business WHERE dataset = 'hm' "
             "AND price_source = 'sales'") == [(17986,)]
    assert q("SELECT min(margin) >= 0.25, max(margin) < 0.75 FROM "
             "item_business WHERE dataset = 'hm'") == [(True, True)]
    # Simulated stock agrees with the simulated sizes in stock.
    assert q("""
        SELECT count(*) FROM items i JOIN item_business b
          USING (dataset, item_id)
        WHERE i.dataset = 'hm' AND coalesce(i.sizes, '') <> coalesce(
            array_to_string(list_filter(map_keys(b.stock), lambda s:
                b.stock[s] > 0 AND s <> 'one size'), ','), '')""") \
        == [(0,)]
    assert q("SELECT count(*) FROM item_business "
             "WHERE dataset = 'yoochoose'") == [(0,)]


def test_bundle_carries_the_business_data(tiny_bundle, engine):
    b = engine.business
    assert len(b) == len(engine.bundle.item_ids)
    assert np.isfinite(b.price).all() and np.isfinite(b.margin).all()
    assert all(s is not None for s in b.stock)
    assert 0.9 < engine.in_stock.mean() < 1.0


def test_merch_table_on_the_tiny_bundle(tiny_bundle, tiny_cfg, tmp_path):
    from train.pipeline import run_merch
    tiny_cfg.serve.bundle = str(tiny_bundle)
    tiny_cfg.merch = MerchConfig(margin_weights=[0.0, 1.0],
                                 max_sessions=60)
    text = run_merch(tiny_cfg, tmp_path)
    assert (tmp_path / "merchandising.md").read_text() == text
    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| 0") or line.startswith("| 1")]
    assert [r[0].split()[0] for r in rows] == ["0", "1"]
    margin = [float(r[3]) for r in rows]
    assert margin[1] > margin[0]  # the weight buys margin
    assert all(0 <= float(r[1]) <= 1 for r in rows)


@pytest.mark.parametrize("override", [
    ["ranking.margin_weight=0.3", "ranking.campaign_tags=[autumn-edit]",
     "ranking.max_per_product_type=3", "merch.max_sessions=10"]])
def test_merch_config_composes(override):
    from test_config import _compose
    cfg = _compose(override)
    assert cfg.ranking.margin_weight == 0.3
    assert list(cfg.ranking.campaign_tags) == ["autumn-edit"]
    assert cfg.merch.max_sessions == 10 and cfg.merch.k == 12
    assert cfg.serve.catalog_log_path == "data/catalog.jsonl"
