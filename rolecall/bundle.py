"""The artifact bundle: the contract between the offline and online wings.

A bundle is a folder of fixed file names plus manifest.json, which lists
every file's sha256. A bundle whose files are missing or do not match
their checksums is refused whole: serving never half-loads one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from rolecall.lookalikes import Bank
from rolecall.merch import Business
from rolecall.model import TowerShape, TwoTower, build

log = logging.getLogger(__name__)

FORMAT = 1
FILES = {
    "model": "model.pt",  # state dict, tower shape, resolved config
    "item_vectors": "item_vectors.npy",  # (n_items, dim + 1)
    "item_index": "items.faiss",  # exact inner-product index
    "id_rows": "id_rows.npy",  # catalogue index -> id row (0: none)
    "features": "features.npy",  # (n_items, F) attribute codes
    "items": "items.json",  # ids, names and role attributes
    "vocabs": "vocabs.json",  # attribute values per feature
    "bank_vectors": "bank_vectors.npy",  # (n_states, dim) unit rows
    "bank_futures": "bank_futures.npz",  # (n_states, n_items) CSR
    "bank_sessions": "bank_sessions.json",  # session id per state
}
# Files a bundle may lack: checked when its manifest lists them, else
# the engine serves with defaults (bundles exported before them).
OPTIONAL = {
    "business": "business.json",  # price, margin, stock, ... per item
}


class BundleError(RuntimeError):
    """A bundle that cannot be served as it is."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: Path) -> dict:
    path = root / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{root}: no manifest.json; not a bundle")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: format {manifest.get('format')!r}, "
                          f"expected {FORMAT}")
    return manifest


def verify(root: Path) -> dict:
    """The manifest, once every file is present and matches it."""
    manifest = read_manifest(root)
    sums = manifest.get("files", {})
    listed = [n for n in OPTIONAL.values() if n in sums]
    for name in [*FILES.values(), *listed]:
        path = root / name
        if not path.is_file():
            raise BundleError(f"{root}: missing {name}")
        if sums.get(name) != sha256(path):
            raise BundleError(f"{root}: {name} does not match its "
                              "checksum in manifest.json")
    return manifest


@dataclass
class Bundle:
    root: Path
    manifest: dict
    model: TwoTower
    config: dict  # the resolved training config
    item_ids: list[str]
    items: dict[str, list]  # column -> values, catalogue order
    item_vectors: np.ndarray
    item_index: faiss.Index
    id_rows: np.ndarray
    features: np.ndarray
    vocabs: dict[str, list[str]]
    bank: Bank
    business: Business

    @property
    def version(self) -> str:
        return self.manifest["version"]


def load(root: str | Path, temperature: float | None = None) -> Bundle:
    root = Path(root)
    manifest = verify(root)
    try:
        return _load(root, manifest, temperature)
    except (OSError, ValueError, KeyError, RuntimeError,
            pickle.UnpicklingError) as exc:
        raise BundleError(f"{root}: unreadable ({exc})") from exc


def _load(root: Path, manifest: dict,
          temperature: float | None) -> Bundle:
    ckpt = torch.load(root / FILES["model"], map_location="cpu",
                      weights_only=True)
    model = build(TowerShape(**ckpt["shape"]))
    model.load_state_dict(ckpt["state"])
    model.eval()
    items = json.loads((root / FILES["items"]).read_text())
    ranking = ckpt["config"]["ranking"]
    bank = Bank(np.load(root / FILES["bank_vectors"]),
                sp.load_npz(root / FILES["bank_futures"]).tocsr(),
                json.loads((root / FILES["bank_sessions"]).read_text()),
                temperature or ranking["lookalike_temperature"])
    bundle = Bundle(
        root=root, manifest=manifest, model=model,
        config=ckpt["config"], item_ids=items["item_id"], items=items,
        item_vectors=np.load(root / FILES["item_vectors"]),
        item_index=faiss.read_index(str(root / FILES["item_index"])),
        id_rows=np.load(root / FILES["id_rows"]),
        features=np.load(root / FILES["features"]),
        vocabs=json.loads((root / FILES["vocabs"]).read_text()),
        bank=bank,
        business=_business(root, manifest, len(items["item_id"])))
    n = len(bundle.item_ids)
    if bundle.item_vectors.shape[0] != n or bundle.item_index.ntotal != n:
        raise BundleError(f"{root}: {n} items but "
                          f"{bundle.item_vectors.shape[0]} vectors and "
                          f"{bundle.item_index.ntotal} indexed")
    if bank.futures.shape[1] != n:
        raise BundleError(f"{root}: look-alike futures cover "
                          f"{bank.futures.shape[1]} items, expected {n}")
    log.info("loaded bundle %s: %d items, %d look-alike states",
             manifest["version"], n, len(bank))
    return bundle


def _business(root: Path, manifest: dict, n: int) -> Business:
    name = OPTIONAL["business"]
    if name not in manifest.get("files", {}):
        log.warning("bundle %s has no %s (exported before business "
                    "data): prices and margins unknown, every item in "
                    "stock", manifest["version"], name)
        return Business.empty(n)
    return Business.from_columns(json.loads((root / name).read_text()), n)
