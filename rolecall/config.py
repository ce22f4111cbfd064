"""Typed configuration; YAML under conf/ only overrides these defaults.

Every dataclass is registered with Hydra's ConfigStore, so a misspelled
key in YAML or on the command line fails at start, not deep in a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class DataConfig:
    name: str = "hm"  # dataset in the events table: hm | yoochoose
    raw_dir: str = "data/raw"
    duckdb_path: str = "data/rolecall.duckdb"
    # date: the last test_days are test, the valid_days before validation.
    # source: use the split the dataset ships with (YooChoose files).
    split: str = "date"
    test_days: int = 1
    valid_days: int = 1
    max_session_len: int = 50  # most recent events kept per session
    # The next item is never one already in the session (true for
    # baskets, where a repeat is a quantity; false for click streams).
    exclude_seen: bool = True
    primary_metric: str = "HR@12"  # selects epochs and the blend
    # Events the server logged (source 'live') join training only when
    # asked: on the bundled 2020 week they would land after the test
    # day, and bench traffic replays test baskets. A live shop sets it.
    include_live: bool = False
    # Caps for tests and quick looks; 0 keeps everything.
    max_train_sessions: int = 0
    max_eval_sessions: int = 0


@dataclass
class ModelConfig:
    dim: int = 64
    dropout: float = 0.1
    # Share of training items whose id is hidden so the attribute path
    # learns to stand in for ids never seen (new arrivals).
    id_dropout: float = 0.15
    recency_init: float = 0.6  # initial decay per event, older to newer


@dataclass
class TrainConfig:
    epochs: int = 12
    # Sessions per optimisation step in all; under torchrun each process
    # takes batch_size / processes of them (train/distributed.py).
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    random_negatives: int = 2048
    logq_correction: bool = True
    patience: int = 3  # epochs without validation gain before stopping
    device: str = "auto"  # auto | cpu | cuda
    # Mixed precision: bfloat16 autocast on a GPU that has it (auto,
    # bf16) or never (off); on a CPU, training stays float32.
    amp: str = "auto"
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    # After choosing the epoch count on validation, train again on train
    # plus validation for that many epochs, so the served model and the
    # test numbers use the most recent day, as the baselines do.
    refit: bool = True


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [12, 20])
    baselines: list[str] = field(
        default_factory=lambda: ["pop", "cooc", "vsknn"])
    # Share of the look-alike votes in the final score, chosen on
    # validation from this grid; never on test.
    blend_grid: list[float] = field(
        default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8])
    batch_size: int = 512


@dataclass
class RankingConfig:
    candidates: int = 256  # items retrieved from the item index
    lookalikes: int = 200  # past session states consulted per click
    # Weight of look-alike votes against the model; null takes the value
    # the evaluation chose on validation and wrote into the bundle.
    lookalike_weight: float | None = None
    future_decay: float = 0.5  # vote of the n-th later item: decay**(n-1)
    # Sharpness of neighbour weights: exp((cosine - 1) / temperature).
    lookalike_temperature: float = 0.1
    # Roles: encode only the active role's events (active_only), all
    # events with the active role's last (active_first), or in time
    # order (off); drop items that do not fit the active role (filter),
    # multiply their score by role_demotion (demote), or ignore roles
    # (off). A known size of the active role filters the same way.
    role_encoding: str = "active_only"
    role_mode: str = "filter"
    role_demotion: float = 0.05
    size_filter: bool = True
    # Stitching. A linked customer's past events count two ways: the
    # last history_events are encoded before the session's own (0: the
    # session alone decides the embedding), and their recency-weighted
    # distribution takes history_weight of the score (0: off). The
    # session's intent keeps 1 - history_weight.
    history_events: int = 0
    history_weight: float = 0.2
    history_decay: float = 0.9  # per event, older to newer
    history_recent: int = 50  # past events considered at all
    # Merchandising (issue 5; rolecall/merch.py). Each business signal
    # is in [0, 1] and adds weight * signal * (the best relevance among
    # the answer's candidates) to an item's score, as its own part: a
    # margin_weight of 0.2 lifts an item with a full margin by a fifth
    # of the top item's relevance, in any session. All 0 (default): the
    # relevance ranking, unchanged. A negative weight demotes.
    margin_weight: float = 0.0  # signal: margin share of the price
    new_arrival_weight: float = 0.0  # 1 on arrival, 0 after the days
    new_arrival_days: int = 30
    # Newness is measured from this day (YYYY-MM-DD); "" takes the
    # newest arrival in the bundle (the bundled data ends in 2020).
    new_arrival_as_of: str = ""
    campaign_weight: float = 0.0  # signal: tagged with an active tag
    campaign_tags: list[str] = field(default_factory=list)
    stock_weight: float = 0.0  # stock pressure: units / stock_full
    stock_full: int = 50
    # Diversity: at most this many items of one product type per answer
    # (0: no cap). It gives way only when the eligible items cannot
    # fill k otherwise.
    max_per_product_type: int = 0
    # The newest items added online (PUT /v1/items) that join every
    # answer's pool with relevance 0, for business weights to lift.
    fresh_pool: int = 200


@dataclass
class IndexConfig:
    """How approximate indexes are built (rolecall/index.py)."""

    # auto: exact search below this many rows, IVF from it on; at 20k
    # rows a flat scan is still well under a millisecond on one thread.
    auto_flat_below: int = 20_000
    hnsw_m: int = 32  # links per node: recall vs memory (8*M B/row)
    hnsw_ef_construction: int = 80
    # Candidates kept while searching; raised to k when k is larger.
    hnsw_ef_search: int = 64
    ivf_nlist: int = 0  # 0: about sqrt(rows)
    ivf_nprobe: int = 32
    ivf_train_rows: int = 100_000  # k-means sample, at least 64 / list


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    bundle: str = "artifacts/hm"
    default_k: int = 20
    max_k: int = 100
    max_events_per_session: int = 200
    # Memory store: least recently seen evicted beyond max_sessions, and
    # a session idle longer than session_ttl_s is gone (checked on read,
    # removed a few at a time on writes: no sweep pauses the loop).
    max_sessions: int = 1_000_000
    # Expired sessions removed per write at most; above 1, removal
    # outpaces arrival, and one write never stalls on a backlog.
    expire_per_put: int = 8
    # sha256 of every forgotten customer's session ids: applied to the
    # look-alike bank at every load and swap, so a forgotten customer
    # does not come back with a bundle exported before the request.
    forgotten_path: str = "data/forgotten.txt"
    # auto | flat | hnsw | ivf; auto picks by size (IndexConfig).
    item_index: str = "auto"
    lookalike_index: str = "auto"
    # Approximate indexes built at start are kept here, named by a hash
    # of their rows and settings, and read back at the next start or
    # swap of the same bundle (seconds instead of a minute); "" builds
    # them every time.
    index_cache_dir: str = "data/index-cache"
    index: IndexConfig = field(default_factory=IndexConfig)
    threads: int = 1  # torch and faiss threads per server process
    # Encoded sequences whose GRU state a CPU server keeps, so the next
    # click of a session costs one step (rolecall/model.py, LastState;
    # about 0.6 KiB each).
    encoder_cache: int = 50_000
    # Hide what start (and a swap) loaded from Python's cyclic garbage
    # collector, whose full passes over it stop the loop for ~0.2 s on
    # H&M (serve/app.py, freeze_heap). Off only in tests, which start
    # many small apps in one process.
    freeze_heap: bool = True
    # auto: encode (and search exact or IVF indexes) on a GPU when torch
    # sees one and faiss-gpu is installed, else on the CPU.
    device: str = "auto"
    # Micro-batching: clicks arriving within this window are encoded and
    # searched as one batch (up to max_batch). null: 2 ms on a GPU, where
    # one row at a time leaves it idle, and off (0) on a CPU, where a
    # batch only makes the first click wait.
    batch_window_ms: float | None = None
    max_batch: int = 16  # at most serve.max_inflight, which bounds it
    # Durable event log (serve/eventlog.py): JSON lines, one file per
    # day and writer, rotated at event_log_max_mb; "" turns it off, and
    # then a crash loses the sessions of a memory store.
    event_log_dir: str = "data/events"
    event_log_max_mb: int = 64
    # Sessions idle longer than this expire (memory and Redis) and are
    # not rebuilt at start; a shop's visit rarely spans a day.
    session_ttl_s: float = 86_400.0
    # A session joins the look-alike bank at a purchase or once idle
    # this long, without a retrain (serve/lookalike_feed.py).
    lookalike_idle_s: float = 1_800.0
    store: str = "memory"  # memory | redis (shared by processes, hosts)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A dead or stalled Redis fails a call within this many seconds and
    # the answer is 503, instead of requests piling up behind it.
    redis_timeout_s: float = 0.5
    # Processes answering on one port (SO_REUSEPORT); above 1 needs
    # store=redis, or each process would hold its own sessions.
    workers: int = 1
    # Online catalogue changes (PUT /v1/items), JSON lines, fsync'ed
    # before the answer and replayed on every load and swap; "" keeps
    # them in memory only.
    catalog_log_path: str = "data/catalog.jsonl"
    # Bearer token for /v1/admin/*; the env ROLECALL_ADMIN_TOKEN wins.
    # Unset in both places, admin calls are refused.
    admin_token: str = ""
    # Overload (serve/overload.py): at most max_inflight requests are
    # handled at once and max_queue wait their turn; more are answered
    # 503 at once, and one that waited longer than max_queue_ms is
    # answered 503 when its turn comes, since its shopper has moved on.
    # Health, ping and metrics are never shed. max_inflight=0 turns
    # shedding off, max_queue=0 leaves no line, max_queue_ms=0 lets a
    # request wait in line as long as it takes. With micro-batching
    # (a GPU), keep max_inflight at least max_batch: it bounds a batch.
    # Chosen on `rolecall bench` at twice capacity on 2 cores: fewer in
    # flight share fewer fsyncs (4: a third fewer answered); a longer
    # wait makes the answered later, a shorter one sheds a mere burst
    # of simultaneous clicks (README, Reliability).
    max_inflight: int = 16
    max_queue: int = 64
    max_queue_ms: float = 50.0
    retry_after_s: int = 1  # Retry-After of a 503


@dataclass
class BenchConfig:
    """`rolecall bench`: online load, per-stage, scale, training,
    session memory and overload."""

    parts: list[str] = field(default_factory=lambda: [
        "online", "stages", "served_index", "scale", "train", "sessions",
        "overload"])
    # Sessions replayed: the dataset's last day (its test day).
    dataset: str = "hm"
    max_sessions: int = 5000
    rates: list[int] = field(default_factory=lambda: [
        100, 250, 350, 400, 450, 500, 1000, 2000])  # open loop, per second
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    duration_s: float = 6.0  # per rate or concurrency level
    warmup_s: float = 2.0
    lanes: int = 64  # sessions interleaved in the open loop
    timeout_s: float = 5.0  # a slower answer counts as an error
    stage_clicks_s: float = 8.0  # closed loop of one for stage timings
    # Also time stages on a server forced to exact search, same run.
    compare_flat: bool = True
    pin: bool = True  # server and load generator on different cores
    start_timeout_s: float = 300.0
    scale_sizes: list[int] = field(default_factory=lambda: [
        100_000, 1_000_000, 10_000_000])
    scale_kinds: list[str] = field(default_factory=lambda: [
        "flat", "hnsw", "ivf"])
    scale_dim: int = 64
    scale_queries: int = 200
    scale_k: int = 20
    scale_recall_goal: float = 0.95
    # HNSW on random rows builds in minutes per 100k on two shared cores;
    # above this size the scale table uses IVF only.
    scale_hnsw_max_rows: int = 100_000
    train_epochs: int = 1
    train_threads: int = 2
    # The device part (not in the default parts): open-loop rates for
    # the CPU and the GPU server.
    device_rates: list[int] = field(default_factory=lambda: [
        250, 500, 1000, 2000, 4000])
    # sessions: distinct sessions pushed through the memory store in
    # simulated time, arriving session_rate a second with
    # session_clicks clicks each; once with idle expiry at
    # session_ttl_s (the cap out of reach), once with the cap at
    # session_cap (no expiry). A row every session_checkpoint.
    session_count: int = 1_000_000
    session_checkpoint: int = 100_000
    session_rate: float = 2_000.0
    session_clicks: int = 3
    session_ttl_s: float = 60.0
    session_cap: int = 100_000
    # overload: capacity from a closed loop of overload_shoppers (as
    # many as serve.max_inflight: none waits in line, and enough share
    # each fsync), then an open loop at overload_factor times it, then
    # overload_recovery times it; the same rates again with shedding
    # off, for comparison.
    overload_shoppers: int = 16
    overload_factor: float = 2.0
    overload_recovery: float = 0.25
    overload_s: float = 10.0
    overload_recovery_s: float = 5.0
    overload_compare_off: bool = True


@dataclass
class MerchConfig:
    """`rolecall merch`: accuracy against margin, per margin weight."""

    margin_weights: list[float] = field(
        default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 1.0])
    k: int = 12
    max_sessions: int = 1500  # per split; keeps the run to minutes
    # The weight recommended is the largest whose validation HR@k stays
    # within this share of the weight-0 HR@k.
    hr_tolerance: float = 0.02


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    merch: MerchConfig = field(default_factory=MerchConfig)
    artifacts_dir: str = "artifacts"
    # `rolecall export`: a train run's checkpoint_<dataset>.pt.
    checkpoint: str = ""
    # Datasets the main job trains and evaluates; the first is served.
    datasets: list[str] = field(default_factory=lambda: ["hm", "yoochoose"])


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="data", name="base_data", node=DataConfig)
