"""The README's main job, end to end on a small config, as a user runs it:
ingest, train and evaluate both datasets, export, then serve on a port."""

import json
import os
import subprocess
import sys
import time

from tests.servers import ROOT, free_port, get, post


def test_main_job_trains_evaluates_exports_and_serves(tmp_path):
    port = free_port()
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rolecall", "main",
           f"data.duckdb_path={tmp_path / 'db.duckdb'}",
           f"artifacts_dir={tmp_path / 'artifacts'}",
           f"hydra.run.dir={run_dir}", f"serve.port={port}",
           f"serve.event_log_dir={tmp_path / 'events'}",
           "data.max_train_sessions=1500", "data.max_eval_sessions=100",
           "model.dim=16", "train.epochs=1", "train.random_negatives=128",
           "train.threads=1", "eval.baselines=[pop,vsknn]",
           "eval.blend_grid=[0.0,0.5]",
           # exact search: an HNSW build would dominate this test
           "serve.item_index=flat", "serve.lookalike_index=flat"]
    log = (tmp_path / "main.log").open("w")
    token = "main-job-token-9f3b"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ,
                                 "ROLECALL_ADMIN_TOKEN": token})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 420
        while True:
            assert proc.poll() is None, (tmp_path / "main.log").read_text()
            try:
                health = get(f"{base}/healthz")
                break
            except OSError:
                assert time.time() < deadline, "server never came up"
                time.sleep(1)
        assert health["status"] == "ok" and health["items"] == 105542
        items = json.loads((tmp_path / "artifacts" / "hm" /
                            "items.json").read_text())["item_id"]
        answer = post(f"{base}/v1/events", {
            "session_id": "e2e", "event_type": "click",
            "item_id": items[1000]})
        assert len(answer["recommendations"]) == 20
        for dataset in ("hm", "yoochoose"):
            table = (run_dir / f"eval_{dataset}.md").read_text()
            assert "two-tower + look-alikes" in table and "vsknn" in table
        assert (tmp_path / "artifacts" / "yoochoose" /
                "manifest.json").is_file()
        assert "two-tower + look-alikes" in (
            run_dir / "evaluation.md").read_text()
        printed = (tmp_path / "main.log").read_text()
        # How to set the admin token, and that it is set; never it.
        assert "admin token set (env ROLECALL_ADMIN_TOKEN)" in printed
        assert "serve.admin_token=<token>" in printed
        assert token not in printed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
