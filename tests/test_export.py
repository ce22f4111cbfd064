"""`rolecall export`: a bundle again from a train run's checkpoint."""

import numpy as np

from rolecall.bundle import load
from train.pipeline import run_export


def test_export_from_checkpoint_matches_the_trained_bundle(
        tiny_bundle, tiny_cfg, tmp_path):
    run_dir = tiny_bundle.parent.parent  # <run>/artifacts/hm
    tiny_cfg.artifacts_dir = str(tmp_path / "again")
    again = load(run_export(tiny_cfg, run_dir / "checkpoint_hm.pt"))
    first = load(tiny_bundle)
    np.testing.assert_allclose(again.item_vectors, first.item_vectors,
                               rtol=1e-5, atol=1e-6)
    assert again.manifest["metrics"]["lookalike_weight"] == \
        first.manifest["metrics"]["lookalike_weight"]
    assert len(again.bank) == len(first.bank)
