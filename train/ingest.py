"""Load the bundled raw data into one DuckDB file.

Schema (one row per thing, every table keyed by `dataset` first):

- items(dataset, item_id, name, product_type, product_group, appearance,
  colour, colour_value, colour_master, department, index_name,
  index_group, section, garment_group, gender, age_group, size_band,
  sizes)
- events(dataset, event_id, ts, session_id, user_id, device_id, item_id,
  event_type, filters, price, quantity, source, seq)
- customers(dataset, user_id, age, club_status, news_frequency)
- identities(dataset, session_id, user_id, device_id, linked_at, via)
- item_business(dataset, item_id, price, price_source, margin, stock,
  arrival, campaigns): merchandising data (rolecall/merch.py)

Each dataset is replaced in one transaction, so re-running is idempotent
and a file that fails validation leaves the database as it was. Keys are
checked at the end of that transaction rather than declared: DuckDB's
key indexes make replacing a dataset ten times slower.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from rolecall.config import DataConfig
from rolecall.eventlog import read_records
from rolecall.roles import derive_role

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    dataset VARCHAR NOT NULL, item_id VARCHAR NOT NULL, name VARCHAR,
    product_type VARCHAR, product_group VARCHAR, appearance VARCHAR,
    colour VARCHAR, colour_value VARCHAR, colour_master VARCHAR,
    department VARCHAR, index_name VARCHAR, index_group VARCHAR,
    section VARCHAR, garment_group VARCHAR, gender VARCHAR,
    age_group VARCHAR, size_band VARCHAR, sizes VARCHAR);
ALTER TABLE items ADD COLUMN IF NOT EXISTS sizes VARCHAR;
CREATE TABLE IF NOT EXISTS events (
    dataset VARCHAR NOT NULL, event_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL, session_id VARCHAR NOT NULL, user_id VARCHAR,
    device_id VARCHAR, item_id VARCHAR, event_type VARCHAR NOT NULL,
    filters VARCHAR, price DOUBLE, quantity INTEGER DEFAULT 1,
    source VARCHAR, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    dataset VARCHAR NOT NULL, user_id VARCHAR NOT NULL, age DOUBLE,
    club_status VARCHAR, news_frequency VARCHAR);
CREATE TABLE IF NOT EXISTS identities (
    dataset VARCHAR NOT NULL, session_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL, device_id VARCHAR, linked_at TIMESTAMP,
    via VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS item_business (
    dataset VARCHAR NOT NULL, item_id VARCHAR NOT NULL, price DOUBLE,
    price_source VARCHAR, margin DOUBLE, stock MAP(VARCHAR, INTEGER),
    arrival DATE, campaigns VARCHAR[]);
"""

HM_ARTICLES = "hm-fashion/articles.parquet"
HM_TRANSACTIONS = "hm-fashion/transactions_2020-09-16_to_2020-09-22.parquet"
HM_CUSTOMERS = "hm-fashion/customers_sample.csv"
YC_DIR = "yoochoose-rsc15-100k"
YC_FILES = {"train": "yoochoose-clicks-100k_train_tr.txt",
            "valid": "yoochoose-clicks-100k_train_valid.txt",
            "test": "yoochoose-clicks-100k_test.txt"}
DG_VIEWS = "diginetica-sample/sample_train-item-views.csv"

ARTICLE_COLUMNS = {
    "article_id": "VARCHAR", "prod_name": "VARCHAR",
    "product_type_name": "VARCHAR", "product_group_name": "VARCHAR",
    "graphical_appearance_name": "VARCHAR", "colour_group_name": "VARCHAR",
    "perceived_colour_value_name": "VARCHAR",
    "perceived_colour_master_name": "VARCHAR",
    "department_name": "VARCHAR", "index_name": "VARCHAR",
    "index_group_name": "VARCHAR", "section_name": "VARCHAR",
    "garment_group_name": "VARCHAR"}
TRANSACTION_COLUMNS = {
    "t_dat": "DATE", "customer_id": "VARCHAR", "article_id": "VARCHAR",
    "price": "FLOAT", "sales_channel_id": "TINYINT"}
CUSTOMER_COLUMNS = {
    "customer_id": "VARCHAR", "club_member_status": "VARCHAR",
    "fashion_news_frequency": "VARCHAR", "age": "DOUBLE"}
YC_COLUMNS = {"SessionId": "BIGINT", "ItemId": "BIGINT",
              "Time": "DOUBLE"}
DG_COLUMNS = {"session_id": "BIGINT", "user_id": "VARCHAR",
              "item_id": "BIGINT", "timeframe": "BIGINT",
              "eventdate": "DATE"}

# Types that hold the same values for our purposes.
_COMPATIBLE = {"FLOAT": {"FLOAT", "DOUBLE"},
               "DOUBLE": {"FLOAT", "DOUBLE", "BIGINT", "INTEGER"},
               "TINYINT": {"TINYINT", "SMALLINT", "INTEGER", "BIGINT"},
               "BIGINT": {"TINYINT", "SMALLINT", "INTEGER", "BIGINT"}}


class IngestError(ValueError):
    """A raw file is missing or does not have the expected shape."""


@dataclass
class IngestSummary:
    dataset: str
    items: int
    events: int
    sessions: int
    customers: int
    identities: int
    seconds: float


def connect(path: str | Path, read_only: bool = False):
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    if not read_only:
        con.execute(SCHEMA)
    return con


def _source(path: Path, reader: str) -> str:
    if not path.is_file():
        raise IngestError(f"{path}: file not found; expected the bundled "
                          "raw data (see data/raw/README.md)")
    return f"{reader}('{path.as_posix()}')" if reader else reader


def _check_columns(con, relation: str, path: Path,
                   expected: dict[str, str]) -> None:
    try:
        found = dict(con.execute(
            f"SELECT column_name, column_type FROM "
            f"(DESCRIBE SELECT * FROM {relation})").fetchall())
    except duckdb.Error as exc:
        raise IngestError(
            f"{path}: unreadable ({_first_lines(exc)})") from exc
    for column, kind in expected.items():
        if column not in found:
            raise IngestError(
                f"{path}: column '{column}' missing; expected {kind}, "
                f"found columns {sorted(found)}")
        if found[column] == "VARCHAR" and relation.startswith(
                "read_csv"):
            continue  # CSV text; the cast in the loader checks values
        if found[column] not in _COMPATIBLE.get(kind, {kind}):
            raise IngestError(
                f"{path}: column '{column}' has type {found[column]}; "
                f"expected {kind}")


def _read_csv(path: Path, sep: str) -> str:
    """Text columns; the loaders cast, so a bad value names its file."""
    _source(path, "")
    return (f"read_csv('{_posix(path)}', delim='{sep}', header=true, "
            f"all_varchar=true)")


def _guard(con, path: Path, sql: str) -> None:
    """Run a statement that reads `path`, naming the file on failure."""
    try:
        con.execute(sql)
    except duckdb.ConversionException as exc:
        raise IngestError(f"{path}: a value does not match the expected "
                          f"column type ({_first_lines(exc)})") from exc
    except (duckdb.InvalidInputException,
            duckdb.ConstraintException) as exc:
        raise IngestError(
            f"{path}: malformed ({_first_lines(exc)})") from exc


def _first_lines(exc: Exception, n: int = 3) -> str:
    """DuckDB's CSV errors run to dozens of lines; the first say it."""
    return " | ".join(str(exc).strip().splitlines()[:n])


def _role_table(con, relation: str) -> None:
    combos = con.execute(
        f"SELECT DISTINCT index_group_name, section_name, index_name "
        f"FROM {relation}").fetchall()
    rows = [(g, s, n, *_role_row(g, s, n)) for g, s, n in combos]
    con.execute("CREATE TEMP TABLE role_map (index_group VARCHAR, "
                "section VARCHAR, index_name VARCHAR, gender VARCHAR, "
                "age_group VARCHAR, size_band VARCHAR)")
    con.executemany("INSERT INTO role_map VALUES (?, ?, ?, ?, ?, ?)", rows)


def _role_row(group, section, index_name):
    role = derive_role(group, section, index_name)
    return role.gender, role.age_group, role.size


# H&M publishes no sizes per article. These are SIMULATED, seeded by the
# article id (so re-ingesting gives the same): each size of an article's
# size run is in stock with probability 0.8. Accessories and socks have
# no sizes and fit everyone.
SIZE_RUNS = """
CREATE OR REPLACE TEMP TABLE size_runs AS
SELECT item_id,
    CASE
      WHEN size_band = '50-98' THEN list_transform(range(50, 99, 6),
                                                   lambda n: n::VARCHAR)
      WHEN size_band = '92-140' THEN list_transform(range(92, 141, 6),
                                                    lambda n: n::VARCHAR)
      WHEN size_band = '134-170' THEN list_transform(range(134, 171, 6),
                                                     lambda n: n::VARCHAR)
      WHEN age_group = 'adult' AND product_group = 'Shoes'
        THEN CASE WHEN gender = 'men'
                  THEN ['40', '41', '42', '43', '44', '45', '46']
                  ELSE ['36', '37', '38', '39', '40', '41'] END
      WHEN age_group = 'adult' AND (product_group LIKE 'Garment%'
           OR product_group IN ('Underwear', 'Swimwear', 'Nightwear'))
        THEN ['XS', 'S', 'M', 'L', 'XL']
      ELSE []::VARCHAR[] END AS run
FROM items WHERE dataset = 'hm'
"""
SIMULATED_SIZES = """
UPDATE items SET sizes = array_to_string(list_filter(
    r.run, lambda s: hash(r.item_id || '/' || s) % 100 < 80), ',')
FROM size_runs r
WHERE items.dataset = 'hm' AND items.item_id = r.item_id
"""

# H&M business data. REAL: the price, the median of the article's
# purchase rows in the bundled week (in the data's own scaled unit);
# an article not sold that week takes its product type's median price
# (price_source 'type_median', else 'all_median'). SIMULATED, seeded by
# the article id like the sizes: the margin (25-74 % of the price),
# units per size (1-20 for each size in stock above, 0 for the others;
# an item without sizes always has some), the arrival day (up to a
# year before the week's last day, never after the first sale) and
# campaign tags (autumn-edit 8 %, clearance 5 %).
HM_BUSINESS = """
INSERT INTO item_business
WITH sold AS (
    SELECT item_id, median(price) AS price, min(ts)::DATE AS first_sale
    FROM events WHERE dataset = 'hm' AND price IS NOT NULL
    GROUP BY item_id),
type_price AS (
    SELECT i.product_type, median(s.price) AS price
    FROM items i JOIN sold s USING (item_id)
    WHERE i.dataset = 'hm' GROUP BY ALL),
last AS (SELECT max(ts)::DATE AS day FROM events WHERE dataset = 'hm')
SELECT 'hm', i.item_id,
    coalesce(s.price, t.price, (SELECT median(price) FROM sold)),
    CASE WHEN s.price IS NOT NULL THEN 'sales'
         WHEN t.price IS NOT NULL THEN 'type_median'
         ELSE 'all_median' END,
    0.25 + (hash(i.item_id || '/margin') % 50) / 100.0,
    CASE WHEN len(r.run) = 0
      THEN MAP {'one size': (1 + hash(i.item_id || '/stock') % 20)::INT}
      ELSE map_from_entries(list_transform(r.run, lambda s: (s,
        CASE WHEN hash(i.item_id || '/' || s) % 100 < 80
             THEN (1 + hash(i.item_id || '/stock/' || s) % 20)::INT
             ELSE 0 END))) END,
    least(last.day - (hash(i.item_id || '/arrival') % 365)::INT,
          coalesce(s.first_sale, last.day)),
    list_filter(['autumn-edit', 'clearance'], lambda tag:
        hash(i.item_id || '/' || tag) % 100
          < CASE tag WHEN 'autumn-edit' THEN 8 ELSE 5 END)
FROM items i JOIN size_runs r USING (item_id)
LEFT JOIN sold s USING (item_id)
LEFT JOIN type_price t USING (product_type), last
WHERE i.dataset = 'hm'
"""


def _ingest_hm(con, raw: Path) -> None:
    articles, trans, custs = (raw / HM_ARTICLES, raw / HM_TRANSACTIONS,
                              raw / HM_CUSTOMERS)
    art = _source(articles, "read_parquet")
    _check_columns(con, art, articles, ARTICLE_COLUMNS)
    tr = (f"read_parquet('{_posix(trans)}', file_row_number=true)"
          if trans.is_file() else _source(trans, "read_parquet"))
    _check_columns(con, tr, trans, TRANSACTION_COLUMNS)
    cu = _read_csv(custs, ",")
    _check_columns(con, cu, custs, CUSTOMER_COLUMNS)
    _role_table(con, art)
    _guard(con, articles, f"""
        INSERT INTO items SELECT 'hm', a.article_id, prod_name,
            product_type_name, product_group_name,
            graphical_appearance_name, colour_group_name,
            perceived_colour_value_name, perceived_colour_master_name,
            department_name, a.index_name, index_group_name,
            section_name, garment_group_name, r.gender, r.age_group,
            r.size_band, NULL
        FROM {art} a LEFT JOIN role_map r
          ON r.index_group IS NOT DISTINCT FROM a.index_group_name
         AND r.section IS NOT DISTINCT FROM a.section_name
         AND r.index_name IS NOT DISTINCT FROM a.index_name""")
    con.execute(SIZE_RUNS)
    con.execute(SIMULATED_SIZES)
    # A basket (customer, day, channel) is a session; a repeated row of
    # one article is a quantity. There is no time of day, so ts keeps
    # the basket's row order as seconds after midnight.
    _guard(con, trans, f"""
        INSERT INTO events
        WITH rows AS (
            SELECT file_row_number AS rn, t_dat, customer_id,
                   lpad(article_id, 10, '0') AS item_id, price,
                   'hm-' || substr(customer_id, 1, 16) || '-'
                     || strftime(t_dat, '%Y%m%d') || '-'
                     || sales_channel_id AS session_id,
                   CASE sales_channel_id WHEN 2 THEN 'online'
                        ELSE 'store' END AS channel
            FROM {tr}),
        firsts AS (
            SELECT session_id, item_id, min(rn) AS rn,
                   count(*) AS quantity
            FROM rows GROUP BY session_id, item_id),
        ordered AS (
            SELECT r.*, f.quantity, row_number() OVER (
                PARTITION BY r.session_id ORDER BY r.rn) - 1 AS seq
            FROM rows r JOIN firsts f USING (session_id, item_id, rn))
        SELECT 'hm', 'hm-' || rn, t_dat::TIMESTAMP + to_seconds(seq),
               session_id, customer_id, NULL, item_id, 'purchase', NULL,
               price, quantity, channel, seq
        FROM ordered""")
    _guard(con, custs, f"""
        INSERT INTO customers
        SELECT 'hm', coalesce(c.customer_id, s.customer_id),
               s.age::DOUBLE, s.club_member_status,
               s.fashion_news_frequency
        FROM (SELECT DISTINCT user_id AS customer_id FROM events
              WHERE dataset = 'hm') c
        FULL JOIN {cu} s USING (customer_id)""")
    con.execute("""
        INSERT INTO identities
        SELECT 'hm', session_id, any_value(user_id), NULL, min(ts),
               'purchase'
        FROM events WHERE dataset = 'hm' GROUP BY session_id""")
    con.execute(HM_BUSINESS)
    con.execute("DROP TABLE size_runs")


def _posix(path: Path) -> str:
    return path.as_posix().replace("'", "''")


def _ingest_yoochoose(con, raw: Path) -> None:
    parts = []
    for split, name in YC_FILES.items():
        path = raw / YC_DIR / name
        rel = _read_csv(path, "\t")
        _check_columns(con, rel, path, YC_COLUMNS)
        parts.append((split, path, rel))
    for split, path, rel in parts:
        _guard(con, path, f"""
            INSERT INTO events
            WITH typed AS (
                SELECT SessionId::BIGINT AS sid, ItemId::BIGINT AS item,
                       Time::DOUBLE AS t FROM {rel})
            SELECT 'yoochoose', 'yc-{split}-' || row_number() OVER (
                       ORDER BY sid, t, item),
                   to_timestamp(t)::TIMESTAMP, 'yc-' || sid,
                   NULL, NULL, item::VARCHAR, 'click', NULL, NULL, 1,
                   '{split}', row_number() OVER (
                       PARTITION BY sid ORDER BY t, item) - 1
            FROM typed""")
    con.execute("""
        INSERT INTO items (dataset, item_id)
        SELECT DISTINCT 'yoochoose', item_id FROM events
        WHERE dataset = 'yoochoose'""")


def _ingest_diginetica(con, raw: Path) -> None:
    path = raw / DG_VIEWS
    rel = _read_csv(path, ";")
    _check_columns(con, rel, path, DG_COLUMNS)
    _guard(con, path, f"""
        INSERT INTO events
        WITH typed AS (
            SELECT session_id::BIGINT AS sid, user_id,
                   item_id::BIGINT AS item, timeframe::BIGINT AS tf,
                   eventdate::DATE AS day FROM {rel})
        SELECT 'diginetica', 'dg-' || row_number() OVER (
                   ORDER BY sid, tf, item),
               day::TIMESTAMP + to_milliseconds(tf), 'dg-' || sid,
               CASE WHEN user_id = 'NA' THEN NULL
                    ELSE 'dg-' || user_id END,
               NULL, item::VARCHAR, 'view', NULL, NULL, 1, 'views',
               row_number() OVER (PARTITION BY sid ORDER BY tf, item) - 1
        FROM typed""")
    con.execute("""
        INSERT INTO items (dataset, item_id)
        SELECT DISTINCT 'diginetica', item_id FROM events
        WHERE dataset = 'diginetica'""")
    # A session whose first views are anonymous logged in mid-visit.
    con.execute("""
        INSERT INTO identities
        SELECT 'diginetica', session_id, any_value(user_id), NULL,
               min(ts) FILTER (WHERE user_id IS NOT NULL),
               CASE WHEN bool_or(user_id IS NULL) THEN 'login'
                    ELSE 'known' END
        FROM events WHERE dataset = 'diginetica'
        GROUP BY session_id HAVING bool_or(user_id IS NOT NULL)""")
    con.execute("""
        INSERT INTO customers (dataset, user_id)
        SELECT DISTINCT 'diginetica', user_id FROM events
        WHERE dataset = 'diginetica' AND user_id IS NOT NULL""")


LOADERS = {"hm": _ingest_hm, "yoochoose": _ingest_yoochoose,
           "diginetica": _ingest_diginetica}


def ingest_dataset(con, dataset: str, raw_dir: str | Path) -> IngestSummary:
    """Replace one dataset's rows in a single transaction."""
    started = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    try:
        for table in ("items", "events", "customers", "identities",
                      "item_business"):
            con.execute(f"DELETE FROM {table} WHERE dataset = ?",
                        [dataset])
        LOADERS[dataset](con, Path(raw_dir))
        con.execute("DROP TABLE IF EXISTS role_map")
        _check_keys(con, dataset)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return _summary(con, dataset, time.perf_counter() - started)


KEYS = {"items": "item_id", "events": "event_id",
        "customers": "user_id", "item_business": "item_id"}


def _check_keys(con, dataset: str) -> None:
    for table, key in KEYS.items():
        dup = con.execute(
            f"SELECT {key}, count(*) FROM {table} WHERE dataset = ? "
            f"GROUP BY {key} HAVING count(*) > 1 LIMIT 1",
            [dataset]).fetchone()
        if dup:
            raise IngestError(f"{dataset}: {table}.{key} '{dup[0]}' "
                              f"appears {dup[1]} times; expected once")


def _summary(con, dataset: str, seconds: float) -> IngestSummary:
    def count(sql: str) -> int:
        return con.execute(sql, [dataset]).fetchone()[0]
    return IngestSummary(
        dataset=dataset,
        items=count("SELECT count(*) FROM items WHERE dataset = ?"),
        events=count("SELECT count(*) FROM events WHERE dataset = ?"),
        sessions=count("SELECT count(DISTINCT session_id) FROM events "
                       "WHERE dataset = ?"),
        customers=count("SELECT count(*) FROM customers "
                        "WHERE dataset = ?"),
        identities=count("SELECT count(*) FROM identities "
                         "WHERE dataset = ?"),
        seconds=seconds)


def ingest(cfg: DataConfig,
           datasets: tuple[str, ...] = tuple(LOADERS),
           online_dir: str | Path | None = None) -> list[IngestSummary]:
    """Ingest the bundled raw data, then the server's event log from
    `online_dir` (serve.event_log_dir); safe to run again."""
    con = connect(cfg.duckdb_path)
    try:
        summaries = []
        for dataset in datasets:
            s = ingest_dataset(con, dataset, cfg.raw_dir)
            log.info("ingested %s: %d items, %d events in %d sessions, "
                     "%d customers (%.1fs)", dataset, s.items, s.events,
                     s.sessions, s.customers, s.seconds)
            summaries.append(s)
        if online_dir:
            ingest_online(con, online_dir)
        return summaries
    finally:
        con.close()


ONLINE_STAGE = """
    CREATE TEMP TABLE online_log (
        n BIGINT, dataset VARCHAR, event_id VARCHAR, ts DOUBLE,
        session_id VARCHAR, user_id VARCHAR, device_id VARCHAR,
        item_id VARCHAR, event_type VARCHAR, filters VARCHAR)"""

# New event ids only, so ingesting a log twice adds nothing twice; a
# session's new events continue its seq after the ones already held.
ONLINE_INSERT = """
    INSERT INTO events
    WITH fresh AS (
        SELECT * FROM online_log o
        WHERE NOT EXISTS (SELECT 1 FROM events e
                          WHERE e.dataset = o.dataset
                            AND e.event_id = o.event_id)
        QUALIFY row_number() OVER (PARTITION BY dataset, event_id
                                   ORDER BY n) = 1),
    held AS (
        SELECT dataset, session_id, max(seq) AS seq FROM events
        WHERE session_id IN (SELECT session_id FROM fresh)
        GROUP BY ALL)
    SELECT f.dataset, f.event_id,
           make_timestamp(CAST(f.ts * 1e6 AS BIGINT)), f.session_id,
           f.user_id, f.device_id, f.item_id, f.event_type, f.filters,
           NULL, 1, 'live',
           coalesce(h.seq, -1) + row_number() OVER (
               PARTITION BY f.dataset, f.session_id ORDER BY f.ts, f.n)
    FROM fresh f LEFT JOIN held h USING (dataset, session_id)"""


# A session that logged in is the customer's from its first event: the
# anonymous events before the login are attributed to them, and the link
# is kept in identities (once).
LIVE_ATTRIBUTION = """
CREATE OR REPLACE TEMP TABLE live_links AS
    SELECT dataset, session_id, arg_max(user_id, ts) AS user_id,
           min(ts) AS linked_at
    FROM events WHERE source = 'live' AND event_type = 'login'
      AND user_id IS NOT NULL GROUP BY ALL;
UPDATE events SET user_id = l.user_id FROM live_links l
WHERE events.dataset = l.dataset AND events.session_id = l.session_id
  AND events.user_id IS NULL;
INSERT INTO identities
    SELECT l.dataset, l.session_id, l.user_id, NULL, l.linked_at, 'login'
    FROM live_links l WHERE NOT EXISTS (
        SELECT 1 FROM identities i WHERE i.dataset = l.dataset
          AND i.session_id = l.session_id AND i.user_id = l.user_id);
DROP TABLE live_links;
"""


def ingest_online(con, log_dir: str | Path) -> int:
    """Add the events the server logged, as source 'live'.

    Their ts is the event's own time: a log from today after a week of
    2020 history makes today the test day of a date split.
    """
    started = time.perf_counter()
    rows = []
    for n, rec in enumerate(read_records(log_dir)):
        e = rec["event"]
        rows.append((n, rec["dataset"], e["event_id"], e["ts"],
                     rec["session_id"], rec["user_id"] or e.get("user_id"),
                     rec["device_id"], e.get("item_id"), e["event_type"],
                     json.dumps(e["filters"]) if e.get("filters")
                     else None))
    if not rows:
        return 0
    before = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(ONLINE_STAGE)
        con.executemany("INSERT INTO online_log VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute(ONLINE_INSERT)
        con.execute(LIVE_ATTRIBUTION)
        con.execute("DROP TABLE online_log")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    added = con.execute("SELECT count(*) FROM events").fetchone()[0] - before
    log.info("ingested the online log %s: %d of %d events new (%.1fs)",
             log_dir, added, len(rows), time.perf_counter() - started)
    return added
