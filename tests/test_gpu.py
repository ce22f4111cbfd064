"""The GPU paths give the CPU paths' answers (issue 8).

Skipped without a CUDA device (CI and the development machines have
none); `.ci/device-check` runs them on a GPU machine.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import EXACT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device visible to torch"),
]


def _engine(bundle, device):
    from rolecall.bundle import load
    from rolecall.config import RankingConfig
    from serve.engine import Engine
    return Engine(load(bundle), RankingConfig(),
                  dataclasses.replace(EXACT, device=device))


def test_serving_on_gpu_answers_like_cpu(tiny_bundle):
    cpu, gpu = _engine(tiny_bundle, "cpu"), _engine(tiny_bundle, "cuda")
    assert gpu.device.type == "cuda"
    rng = np.random.default_rng(0)
    queries = [([int(i) for i in rng.choice(cpu.prior_order[:2000],
                                            size=1 + j % 5)], None)
               for j in range(16)]
    queries = [(items, [1] * len(items)) for items, _ in queries]
    for items, types in queries:
        a = cpu.retrieve(items, types, {})
        b = gpu.retrieve(items, types, {})
        np.testing.assert_allclose(a[1][:20], b[1][:20], rtol=1e-3,
                                   atol=1e-6)
        assert len(set(a[0][:20]) ^ set(b[0][:20])) <= 2
    batched = gpu.retrieve_many(queries)
    for (items, types), found in zip(queries, batched):
        alone = gpu.retrieve(items, types, {})
        assert len(set(found[0][:20]) ^ set(alone[0][:20])) <= 2


def test_faiss_gpu_flat_search_is_exact():
    import faiss
    if not hasattr(faiss, "StandardGpuResources") or \
            faiss.get_num_gpus() == 0:
        pytest.skip("faiss without GPU support (the 'gpu' extra)")
    from rolecall.index import on_gpu
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((20_000, 64)).astype(np.float32)
    xq = rng.standard_normal((50, 64)).astype(np.float32)
    cpu = faiss.IndexFlatIP(64)
    cpu.add(xb)
    gpu = on_gpu(cpu, torch.device("cuda"))
    assert gpu is not cpu
    Dc, Ic = cpu.search(xq, 20)
    Dg, Ig = gpu.search(xq, 20)
    np.testing.assert_allclose(Dc, Dg, rtol=1e-4, atol=1e-4)
    assert (Ic == Ig).mean() > 0.99


def test_training_on_gpu_with_bf16_learns(db_path, tmp_path):
    from conftest import tiny_config
    from train.fit import fit
    from train.sessions import load_sessions
    cfg = tiny_config(db_path, tmp_path / "artifacts", "yoochoose")
    cfg.data.max_train_sessions = 20000
    cfg.data.max_eval_sessions = 1000
    cfg.train.refit = False
    cfg.train.epochs = 3
    data = load_sessions(cfg.data)
    runs = {}
    for device, amp in (("cpu", "off"), ("cuda", "bf16")):
        tcfg = dataclasses.replace(cfg.train, device=device, amp=amp)
        runs[device] = fit(data, cfg.model, tcfg, torch.device(device),
                           "HR@20").history
    for a, b in zip(runs["cpu"], runs["cuda"]):
        assert abs(a["HR@20"] - b["HR@20"]) <= 0.03, (a, b)
