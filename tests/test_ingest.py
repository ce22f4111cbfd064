"""Ingestion of the real bundled data, and what bad files do to it."""

import shutil
from pathlib import Path

import duckdb
import pytest

from rolecall.config import DataConfig
from train.ingest import IngestError, connect, ingest, ingest_dataset
from tests.conftest import RAW


def _counts(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("items", "events", "customers", "identities")}
    finally:
        con.close()


def test_real_data_lands_with_its_documented_shape(db_path):
    con = duckdb.connect(str(db_path), read_only=True)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    # 105,542 articles in the catalogue; 240,311 purchase rows of which
    # repeats in a basket become quantities.
    assert q("SELECT count(*) FROM items WHERE dataset='hm'") == [(105542,)]
    assert q("SELECT sum(quantity) FROM events WHERE dataset='hm'") == [
        (240311,)]
    assert q("SELECT count(DISTINCT session_id) FROM events "
             "WHERE dataset='hm'") == [(78029,)]
    # Article ids in purchases are padded to the catalogue's 10 digits.
    assert q("SELECT count(*) FROM events e LEFT JOIN items i USING "
             "(dataset, item_id) WHERE e.dataset='hm' AND i.item_id "
             "IS NULL") == [(0,)]
    assert q("SELECT count(*) FROM events WHERE dataset='yoochoose'") == [
        (53254 + 16539 + 13568,)]
    assert q("SELECT count(*) FROM identities WHERE dataset='diginetica' "
             "AND via='login'") == [(6,)]
    roles = dict(q("SELECT gender || '/' || age_group, count(*) FROM "
                   "items WHERE dataset='hm' GROUP BY 1"))
    assert roles["women/adult"] == 56780 and roles["men/adult"] == 13425
    con.close()


def test_reingest_is_idempotent(tmp_path):
    cfg = DataConfig(raw_dir=str(RAW), duckdb_path=str(tmp_path / "x.db"))
    ingest(cfg, ("yoochoose", "diginetica"))
    first = _counts(tmp_path / "x.db")
    ingest(cfg, ("yoochoose", "diginetica"))
    assert _counts(tmp_path / "x.db") == first


@pytest.fixture
def raw_copy(tmp_path) -> Path:
    raw = tmp_path / "raw"
    for d in ("yoochoose-rsc15-100k", "diginetica-sample"):
        shutil.copytree(RAW / d, raw / d)
    return raw


def test_missing_file_names_the_file(tmp_path, raw_copy):
    (raw_copy / "diginetica-sample" / "sample_train-item-views.csv"
     ).unlink()
    con = connect(tmp_path / "x.db")
    with pytest.raises(IngestError, match="sample_train-item-views.csv: "
                       "file not found"):
        ingest_dataset(con, "diginetica", raw_copy)


def test_missing_column_names_column_expected_and_found(tmp_path,
                                                        raw_copy):
    path = raw_copy / "diginetica-sample" / "sample_train-item-views.csv"
    text = path.read_text().replace("item_id", "article", 1)
    path.write_text(text)
    con = connect(tmp_path / "x.db")
    with pytest.raises(IngestError) as err:
        ingest_dataset(con, "diginetica", raw_copy)
    assert "sample_train-item-views.csv" in str(err.value)
    assert "'item_id'" in str(err.value)


def test_malformed_file_changes_nothing(tmp_path, raw_copy):
    db = tmp_path / "x.db"
    con = connect(db)
    ingest_dataset(con, "diginetica", raw_copy)
    ingest_dataset(con, "yoochoose", raw_copy)
    con.close()
    before = _counts(db)
    path = (raw_copy / "yoochoose-rsc15-100k" /
            "yoochoose-clicks-100k_test.txt")
    lines = path.read_text().splitlines()
    lines[50] = "12\tnot-a-number\t1396860669.2"
    path.write_text("\n".join(lines) + "\n")
    con = connect(db)
    with pytest.raises(IngestError, match="yoochoose-clicks-100k_test"):
        ingest_dataset(con, "yoochoose", raw_copy)
    con.close()
    assert _counts(db) == before
