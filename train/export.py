"""Write the artifact bundle that serve loads (see rolecall/bundle.py)."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import faiss
import numpy as np
import scipy.sparse as sp
import torch

import rolecall
from rolecall.bundle import FILES, FORMAT, OPTIONAL, sha256, verify
from rolecall.items import FEATURES
from rolecall.lookalikes import Bank
from rolecall.merch import Business
from train.encode import item_vectors
from train.fit import FitResult
from train.sessions import SessionData

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    return {"rolecall": rolecall.__version__, "torch": str(torch.__version__),
            "faiss": faiss.__version__, "numpy": np.__version__,
            "duckdb": duckdb.__version__,
            "python": platform.python_version()}


def _items_json(data: SessionData) -> dict:
    cat = data.catalog
    cols = {"item_id": cat.item_ids, "name": cat.names,
            "gender": list(cat.genders), "age_group": list(cat.age_groups),
            "sizes": cat.sizes}
    for j, field in enumerate(FEATURES):
        if field in ("gender", "age_group"):
            continue
        if field in cat.fields:
            k = cat.fields.index(field)
            vocab = cat.vocabs[field]
            cols[field] = [vocab[c] or None for c in cat.features[:, k]]
    return cols


def export(out: Path, data: SessionData, fit: FitResult, bank: Bank,
           config: dict, metrics: dict) -> Path:
    """Write to a temporary folder, verify, then move into place."""
    started = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"state": fit.model.state_dict(),
                "shape": fit.model.shape.as_dict(), "config": config,
                "versions": versions()}, tmp / FILES["model"])
    vecs = item_vectors(fit.model, fit.tensors)
    np.save(tmp / FILES["item_vectors"], vecs)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    faiss.write_index(index, str(tmp / FILES["item_index"]))
    np.save(tmp / FILES["id_rows"], fit.tensors.id_rows.numpy())
    np.save(tmp / FILES["features"], fit.tensors.features.numpy())
    (tmp / FILES["items"]).write_text(json.dumps(_items_json(data)))
    vocabs = {f: data.catalog.vocabs[f] for f in data.catalog.fields}
    (tmp / FILES["vocabs"]).write_text(json.dumps(vocabs))
    np.save(tmp / FILES["bank_vectors"], bank.vectors)
    sp.save_npz(tmp / FILES["bank_futures"], bank.futures)
    (tmp / FILES["bank_sessions"]).write_text(
        json.dumps(bank.session_ids))
    business = data.catalog.business or Business.empty(len(data.catalog))
    (tmp / OPTIONAL["business"]).write_text(
        json.dumps(business.columns()))
    created = datetime.now(timezone.utc)
    manifest = {
        "format": FORMAT,
        "version": f"{data.dataset}-{created:%Y%m%dT%H%M%S}",
        "created": created.isoformat(), "dataset": data.dataset,
        "data_range": list(data.date_range),
        "n_items": len(data.catalog), "n_lookalikes": len(bank),
        "best_epoch": fit.best_epoch, "metrics": metrics,
        "versions": versions(),
        "files": {name: sha256(tmp / name) for name in
                  [*FILES.values(), *OPTIONAL.values()]}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    verify(tmp)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    log.info("exported bundle %s to %s (%.1fs)", manifest["version"], out,
             time.perf_counter() - started)
    return out
