"""The evaluation harness: next item at every position of test sessions.

The model (two-tower plus look-alikes) and the baselines are scored on
the same positions of the same split in one run. The look-alike share
is chosen on validation; test numbers are computed once, at the end.
Ties rank conservatively: a target tied with others ranks behind them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from rolecall.config import EvalConfig, RankingConfig
from rolecall.lookalikes import Bank, futures_matrix, normalize
from rolecall.scoring import blend, rank_of, softmax
from train.baselines import make_baseline
from train.encode import States, item_vectors, session_states
from train.fit import FitResult
from train.metrics import RankMetrics, conservative_ranks
from train.sessions import SessionData, SessionSet

log = logging.getLogger(__name__)

MODEL = "two-tower + look-alikes"


@dataclass
class Scorer:
    """What the online engine does per click, for a batch of prefixes."""

    item_vecs: np.ndarray  # (n_items, dim + 1)
    bank: Bank
    ranking: RankingConfig
    exclude_seen: bool

    def __post_init__(self):
        self.index = faiss.IndexFlatIP(self.item_vecs.shape[1])
        self.index.add(self.item_vecs)

    def ranks(self, st: States, sessions: SessionSet,
              weights: list[float], chunk: int = 256) -> dict:
        out = {w: np.empty(len(st.targets)) for w in weights}
        for i in range(0, len(st.targets), chunk):
            xq = st.vectors[i:i + chunk]
            D, I = self.index.search(xq, self.ranking.candidates)
            p = softmax(D.astype(np.float64))
            Db, Ib = self.bank.search(xq[:, :-1], self.ranking.lookalikes)
            votes = self.bank.votes(Db, Ib)
            for q in range(len(xq)):
                j = i + q
                seen = (sessions.items[st.session[j]][:st.position[j] + 1]
                        if self.exclude_seen else None)
                row = votes.getrow(q)
                for w in weights:
                    items, score, _, _ = blend(
                        I[q], p[q], row.indices, row.data, w, seen)
                    out[w][j] = rank_of(items, score, st.targets[j])
        return out


def build_bank(fit: FitResult, sessions: SessionSet, n_items: int,
               ranking: RankingConfig, device) -> Bank:
    st = session_states(fit.model, sessions.items, sessions.types,
                        fit.tensors.to(device), device)
    futures = futures_matrix(sessions.items, st.session, st.position,
                             n_items, ranking.future_decay)
    ids = [sessions.session_ids[s] for s in st.session]
    return Bank(normalize(st.vectors[:, :-1]), futures, ids,
                ranking.lookalike_temperature)


@dataclass
class EvalReport:
    dataset: str
    primary: str
    lookalike_weight: float
    validation: dict[str, dict] = field(default_factory=dict)
    test_all: dict[str, dict] = field(default_factory=dict)
    test_seen: dict[str, dict] = field(default_factory=dict)
    unseen_share: float = 0.0
    seconds: float = 0.0

    def to_markdown(self) -> str:
        lines = [f"### {self.dataset}: next item, test split",
                 "",
                 f"Look-alike share {self.lookalike_weight:.2f}, chosen on "
                 f"validation by {self.primary}. "
                 f"{self.unseen_share:.1%} of test targets were never seen "
                 "in the fit data.", ""]
        for title, table in (("all targets (unseen count as misses)",
                              self.test_all),
                             ("unseen targets dropped", self.test_seen)):
            lines += [f"**{title}**", "", _table(table), ""]
        return "\n".join(lines)


def _table(rows: dict[str, dict]) -> str:
    cols = ["HR@12", "MRR@12", "NDCG@12", "HR@20", "MRR@20", "NDCG@20",
            "n"]
    out = ["| method | " + " | ".join(cols) + " |",
           "|---" * (len(cols) + 1) + "|"]
    for name, m in rows.items():
        cells = [f"{int(m[c]):,}" if c == "n" else f"{m[c]:.4f}"
                 for c in cols]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _summaries(ranks: np.ndarray, keep: np.ndarray, ks) -> tuple:
    every, seen = RankMetrics(ks), RankMetrics(ks)
    every.add(ranks)
    seen.add(ranks[keep])
    return every.summary(), seen.summary()


def baseline_ranks(name: str, fit_sessions: SessionSet, st: States,
                   sessions: SessionSet, n_items: int,
                   exclude_seen: bool) -> np.ndarray:
    model = make_baseline(name).fit(fit_sessions.items,
                                    np.asarray(fit_sessions.start_ts),
                                    n_items)
    ranks = np.empty(len(st.targets))
    for j in tqdm(range(len(st.targets)), desc=name, leave=False,
                  mininterval=2.0, disable=None):
        prefix = sessions.items[st.session[j]][:st.position[j] + 1]
        scores = model.score(prefix).astype(np.float64)
        if exclude_seen:
            scores[prefix] = -np.inf
        ranks[j] = conservative_ranks(scores[None, :],
                                      st.targets[j:j + 1])[0]
    return ranks


def evaluate(data: SessionData, fit: FitResult, ecfg: EvalConfig,
             ranking: RankingConfig, primary: str, exclude_seen: bool,
             device) -> tuple[EvalReport, Bank]:
    """Choose the look-alike share on validation, then score the test.

    Returns the report and the bank built from train + validation
    sessions, which is the one to export.
    """
    started = time.perf_counter()
    n_items = len(data.catalog)
    ks = tuple(ecfg.ks)

    # Validation is judged by the model that never saw it.
    chooser = fit.selected or fit
    tensors = chooser.tensors.to(device)
    bank = build_bank(chooser, data.train, n_items, ranking, device)
    st = session_states(chooser.model, data.valid.items,
                        data.valid.types, tensors, device)
    scorer = Scorer(item_vectors(chooser.model, tensors), bank, ranking,
                    exclude_seen)
    by_weight = scorer.ranks(st, data.valid, list(ecfg.blend_grid))
    report = EvalReport(data.dataset, primary, 0.0)
    for w, ranks in by_weight.items():
        acc = RankMetrics(ks)
        acc.add(ranks)
        report.validation[f"{w:.2f}"] = acc.summary()
        log.info("%s validation, look-alike share %.2f: %s %.4f",
                 data.dataset, w, primary, acc.summary()[primary])
    best = max(by_weight, key=lambda w: report.validation[
        f"{w:.2f}"][primary])
    report.lookalike_weight = best

    fit_sessions = data.train + data.valid
    tensors = fit.tensors.to(device)
    item_vecs = item_vectors(fit.model, tensors)
    bank = build_bank(fit, fit_sessions, n_items, ranking, device)
    st = session_states(fit.model, data.test.items, data.test.types,
                        tensors, device)
    seen_items = np.zeros(n_items, bool)
    seen_items[data.fit_items("train", "valid")] = True
    keep = seen_items[st.targets]
    report.unseen_share = float(1.0 - keep.mean()) if len(keep) else 0.0

    scorer = Scorer(item_vecs, bank, ranking, exclude_seen)
    rows = {MODEL: best, "two-tower only": 0.0, "look-alikes only": 1.0}
    model_ranks = scorer.ranks(st, data.test, sorted(set(rows.values())))
    for name, w in rows.items():
        report.test_all[name], report.test_seen[name] = _summaries(
            model_ranks[w], keep, ks)
    for name in ecfg.baselines:
        t0 = time.perf_counter()
        ranks = baseline_ranks(name, fit_sessions, st, data.test, n_items,
                               exclude_seen)
        report.test_all[name], report.test_seen[name] = _summaries(
            ranks, keep, ks)
        log.info("%s test, %s: %s %.4f (%.0fs)", data.dataset, name,
                 primary, report.test_all[name][primary],
                 time.perf_counter() - t0)
    report.seconds = time.perf_counter() - started
    log.info("%s test, %s: %s %.4f", data.dataset, MODEL, primary,
             report.test_all[MODEL][primary])
    return report, bank


def write_report(report: EvalReport, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"eval_{report.dataset}.md"
    path.write_text(report.to_markdown())
    (out_dir / f"eval_{report.dataset}.json").write_text(
        json.dumps(report.__dict__, indent=2))
    return path
