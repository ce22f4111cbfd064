"""Stitching evaluation: the same test baskets, scored as anonymous and
as identified at the first click (the customer's earlier purchases in
the history), through the served engine."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from rolecall.bundle import Bundle
from rolecall.config import RankingConfig
from serve import session_roles
from serve.engine import Engine
from serve.sessions import Event, Session
from train.metrics import RankMetrics
from train.role_eval import EXACT
from train.sessions import SessionData

log = logging.getLogger(__name__)


def customer_baskets(earlier, later, limit: int):
    """Baskets in `later` of customers who bought in `earlier`."""
    past: dict[str, list[int]] = {}
    for user, items in zip(earlier.user_ids, earlier.items):
        if user:
            past.setdefault(user, []).extend(int(i) for i in items)
    out = []
    for user, items in zip(later.user_ids, later.items):
        if user in past and len(items) >= 2:
            out.append((past[user], items))
        if len(out) == limit:
            break
    return out


def _ranks(engine: Engine, baskets, with_history: bool, k: int = 20):
    ranks, first, ms = [], [], []
    for history, items in baskets:
        session = Session("eval")
        for t in range(len(items) - 1):
            ev = Event(str(t), float(t), "purchase", int(items[t]))
            session_roles.apply(session, ev, engine.role_of(ev.item))
            session.events.append(ev)
            t0 = time.perf_counter()
            answer = engine.recommend(
                session, k, history=history if with_history else None)
            ms.append((time.perf_counter() - t0) * 1000)
            top = [a.item for a in answer.items]
            target = int(items[t + 1])
            rank = top.index(target) + 1 if target in top else np.inf
            ranks.append(rank)
            if t == 0:
                first.append(rank)
    return (np.array(ranks), np.array(first),
            float(np.median(ms)) if ms else 0.0)


def _summary(engine: Engine, baskets, with_history: bool) -> tuple:
    ranks, first, ms = _ranks(engine, baskets, with_history)
    m, f = RankMetrics((12, 20)), RankMetrics((12,))
    m.add(ranks)
    f.add(first)
    return m.summary(), f.summary(), ms


def evaluate_stitching(bundle: Bundle, ranking: RankingConfig,
                       data: SessionData, grid=(0.1, 0.2, 0.3, 0.5),
                       limit: int = 1500) -> str:
    """History weight chosen on the validation day, then test scored."""
    valid = customer_baskets(data.train, data.valid, limit)
    best, best_hr = None, -1.0
    for h in grid:
        engine = Engine(bundle, replace(ranking, history_weight=h), EXACT)
        hr = _summary(engine, valid, True)[0]["HR@12"]
        log.info("stitching validation, history weight %.2f: HR@12 %.4f",
                 h, hr)
        if hr > best_hr:
            best, best_hr = h, hr
    engine = Engine(bundle, replace(ranking, history_weight=best), EXACT)
    baskets = customer_baskets(data.train + data.valid, data.test, limit)
    lines = [f"**H&M test baskets of returning customers** "
             f"({len(baskets)} baskets; history = their purchases in the "
             f"earlier days; history weight {best:.2f}, chosen on the "
             "validation day)", "",
             "| scored as | HR@12 | MRR@12 | HR@20 | HR@12 at the first "
             "click | positions | engine ms per answer (median) |",
             "|---|---|---|---|---|---|---|"]
    for name, flag in (("anonymous", False),
                       ("identified at the first click", True)):
        s, f, ms = _summary(engine, baskets, flag)
        lines.append(f"| {name} | {s['HR@12']:.4f} | {s['MRR@12']:.4f} | "
                     f"{s['HR@20']:.4f} | {f['HR@12']:.4f} | "
                     f"{int(s['n']):,} | {ms:.2f} |")
        log.info("stitching, %s: %s", name, s)
    return "\n".join(lines)
