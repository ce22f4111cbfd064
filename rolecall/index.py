"""FAISS indexes chosen by size: exact search when small, IVF when not.

Exact (flat) search costs rows * dim multiply-adds per query: at the
H&M catalogue (105k items) on one thread that is about a millisecond
per click, twice over with the look-alike bank. IVF scans only the
nprobe lists nearest the query: on the real H&M vectors (nlist about
sqrt(rows), nprobe 32) recall@256 of items is 0.998 and recall@200 of
look-alikes 0.98, in 0.13-0.16 ms a query against 0.2 ms for HNSW at
its served settings (recall 0.98) and 0.9-1.0 ms flat. IVF also builds
in a second where HNSW takes twenty, adds rows cheaply (live items),
and has a GPU form. HNSW stays on offer. Evaluation stays on exact
search (train/evaluate.py), so offline numbers never depend on an
approximation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import faiss
import numpy as np

from rolecall.config import IndexConfig

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivf")


def choose(kind: str, n_rows: int, params: IndexConfig) -> str:
    """The concrete kind for n_rows: auto is flat below a size, IVF
    from it on."""
    if kind not in KINDS:
        raise ValueError(f"index kind: one of {', '.join(KINDS)}; "
                         f"found {kind!r}")
    if kind != "auto":
        return kind
    return "flat" if n_rows < params.auto_flat_below else "ivf"


def nlist_for(n_rows: int, params: IndexConfig) -> int:
    # About sqrt(n) lists balances the coarse search against each list's
    # scan, and keeps k-means and assignment at 10M rows to a minute on
    # two cores (4 * sqrt(n) would take several). At least one list,
    # never more than rows / 39 (faiss's minimum points per centroid).
    if params.ivf_nlist > 0:
        return params.ivf_nlist
    return max(1, min(int(math.sqrt(n_rows)), n_rows // 39))


def build_index(xb: np.ndarray, kind: str = "auto",
                params: IndexConfig | None = None,
                metric: int = faiss.METRIC_INNER_PRODUCT,
                k: int = 0, seed: int = 0,
                cache_dir: str | Path | None = None) -> faiss.Index:
    """An index over the rows of xb, searched by inner product.

    k is the number of neighbours callers will ask for: HNSW keeps at
    least that many candidates while searching, or recall at k drops.
    With cache_dir, an approximate index is written there once built
    and read back by the next call over the same rows and settings (a
    restart), instead of being built again; flat ones cost nothing to
    build and are not cached.
    """
    params = params or IndexConfig()
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    n, d = xb.shape
    kind = choose(kind, n, params)
    cached = None
    if cache_dir and kind != "flat" and n:
        cached = Path(cache_dir) / _cache_key(xb, kind, params, metric,
                                              seed)
        index = _read_cached(cached)
        if index is not None:
            _tune(index, params, k)
            log.info("%s index over %d x %d read from %s", kind, n, d,
                     cached)
            return index
    index = _build(xb, kind, params, metric, k, seed)
    if cached is not None:
        _write_cached(index, cached)
    return index


def _build(xb: np.ndarray, kind: str, params: IndexConfig, metric: int,
           k: int, seed: int) -> faiss.Index:
    n, d = xb.shape
    started = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexFlat(d, metric)
    elif kind == "hnsw" and _mips(xb, metric):
        index = MipsAsL2(_hnsw(d + 1, params, faiss.METRIC_L2, k), xb)
    elif kind == "hnsw":
        index = _hnsw(d, params, metric, k)
    else:
        index = _ivf(xb, nlist_for(n, params), params, metric, seed)
    if n:
        index.add(xb)
    log.info("%s index over %d x %d built in %.1fs", kind, n, d,
             time.perf_counter() - started)
    return index


def _cache_key(xb: np.ndarray, kind: str, params: IndexConfig,
               metric: int, seed: int) -> str:
    """Names the rows and every setting that shapes the built index;
    search-time settings (efSearch, nprobe) are set after reading."""
    h = hashlib.sha256(xb.tobytes())
    build = {"kind": kind, "shape": xb.shape, "metric": metric,
             "seed": seed, "m": params.hnsw_m,
             "ef_construction": params.hnsw_ef_construction,
             "nlist": params.ivf_nlist, "train": params.ivf_train_rows}
    h.update(json.dumps(build, sort_keys=True).encode())
    return f"{kind}-{h.hexdigest()[:24]}"


def _read_cached(stem: Path):
    path, meta = stem.with_suffix(".faiss"), stem.with_suffix(".json")
    if not path.is_file() or not meta.is_file():
        return None
    try:
        index = faiss.read_index(str(path))
        wrapper = json.loads(meta.read_text())
    except (RuntimeError, ValueError, OSError) as exc:
        log.warning("index cache %s unreadable (%s); building again",
                    path, exc)
        return None
    if wrapper.get("mips_radius2") is not None:
        return MipsAsL2.around(index, wrapper["mips_radius2"],
                               wrapper["d"])
    return index


def _write_cached(index, stem: Path) -> None:
    """Written under temporary names and renamed, meta last: a crash
    leaves no half index that looks whole."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    inner = index.index if isinstance(index, MipsAsL2) else index
    meta = {"mips_radius2": getattr(index, "radius2", None),
            "d": getattr(index, "d", None)}
    path, tmp = stem.with_suffix(".faiss"), stem.with_suffix(".faiss.tmp")
    faiss.write_index(inner, str(tmp))
    os.replace(tmp, path)
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, stem.with_suffix(".json"))


def _tune(index, params: IndexConfig, k: int) -> None:
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(params.hnsw_ef_search, k)
    elif hasattr(index, "nprobe"):
        index.nprobe = min(params.ivf_nprobe, index.nlist)


def _mips(xb: np.ndarray, metric: int) -> bool:
    """Inner products over rows of unequal norms (item vectors)."""
    if metric != faiss.METRIC_INNER_PRODUCT or not len(xb):
        return False
    norms = np.linalg.norm(xb, axis=1)
    return bool(norms.max() - norms.min() > 1e-3)


def _hnsw(d: int, params: IndexConfig, metric: int,
          k: int) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(d, params.hnsw_m, metric)
    index.hnsw.efConstruction = params.hnsw_ef_construction
    index.hnsw.efSearch = max(params.hnsw_ef_search, k)
    return index


class MipsAsL2:
    """Inner-product search through an L2 index (MIPS-to-NN reduction).

    Each row gets one more coordinate, sqrt(R^2 - |x|^2), so all rows
    have norm R, and queries get 0 there: nearest in L2 is then largest
    inner product. HNSW's graph finds L2 neighbours reliably, but not
    inner-product ones among rows of unequal norms (recall@20 0.24 on
    the tests' tiny bundle). search() answers inner products, as
    IndexFlatIP does.
    """

    def __init__(self, index: faiss.Index, xb: np.ndarray):
        self.index = index
        self.radius2 = float((xb.astype(np.float64) ** 2).sum(1).max())
        self.d = xb.shape[1]

    @classmethod
    def around(cls, index: faiss.Index, radius2: float,
               d: int) -> MipsAsL2:
        """The wrapper around an L2 index already holding the rows."""
        out = cls.__new__(cls)
        out.index, out.radius2, out.d = index, radius2, d
        return out

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def hnsw(self):
        return self.index.hnsw

    def add(self, xb: np.ndarray) -> None:
        sq = (xb.astype(np.float64) ** 2).sum(1)
        extra = np.sqrt(np.maximum(self.radius2 - sq, 0.0))
        self.index.add(np.hstack([xb, extra[:, None]]).astype(np.float32))

    def search(self, xq: np.ndarray, k: int):
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        D, I = self.index.search(
            np.hstack([xq, np.zeros((len(xq), 1), np.float32)]), k)
        qq = (xq.astype(np.float64) ** 2).sum(1, keepdims=True)
        # |q - x'|^2 = |q|^2 + R^2 - 2 q.x
        return ((qq + self.radius2 - D) / 2).astype(np.float32), I


def _ivf(xb: np.ndarray, nlist: int, params: IndexConfig, metric: int,
         seed: int) -> faiss.Index:
    d = xb.shape[1]
    quantizer = faiss.IndexFlat(d, metric)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
    # k-means on a sample: 64 points per list are plenty for centroids,
    # and training on all of 10M rows would dominate the build.
    rows = min(len(xb), max(nlist * 64, params.ivf_train_rows))
    rng = np.random.default_rng(seed)
    sample = xb[np.sort(rng.choice(len(xb), rows, replace=False))]
    index.cp.seed = seed
    index.train(sample)
    index.nprobe = min(params.ivf_nprobe, nlist)
    return index


def on_gpu(index, device) -> object:
    """The index on the GPU when serving there and faiss can: exact and
    IVF indexes copy over and answer the same; HNSW (and the inner-product
    wrapper around it) has no GPU form and stays on the CPU."""
    if getattr(device, "type", device) != "cuda":
        return index
    if not hasattr(faiss, "StandardGpuResources") or \
            faiss.get_num_gpus() == 0:
        log.info("faiss has no GPU support here (install the 'gpu' "
                 "extra); searching on the CPU")
        return index
    if not isinstance(index, (faiss.IndexFlat, faiss.IndexIVFFlat)):
        return index
    global _gpu_resources
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_gpu_resources, 0, index)


_gpu_resources = None


def recall_at_k(I: np.ndarray, I_exact: np.ndarray) -> float:
    """Share of the exact top k that the approximate top k also holds."""
    k = I_exact.shape[1]
    hits = sum(len(np.intersect1d(a[a >= 0], b[b >= 0]))
               for a, b in zip(I[:, :k], I_exact))
    return hits / max(int((I_exact >= 0).sum()), 1)
