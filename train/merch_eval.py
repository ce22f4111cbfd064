"""Accuracy against business value, per margin weight.

The same test sessions are replayed event by event through the served
engine (stock filter, roles, ranking step and all), once per
ranking.margin_weight. Per position (the next item of the session):

- HR@k and MRR@k: what the shopper took next is in the top k;
- mean margin@k: the mean margin share of the k items shown (what the
  shop would earn per sale if the shopper took any of them);
- hit margin: price * margin of the next item when it is in the top k,
  summed per 1,000 positions (the margin the recommendations earned,
  in the data's price unit).

The weight to serve is chosen on the validation day: the largest whose
HR@k stays within merch.hr_tolerance of weight 0's. Test is scored once
per weight, for the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from rolecall.bundle import Bundle
from rolecall.config import MerchConfig, RankingConfig
from serve import session_roles
from serve.engine import Engine
from serve.sessions import Event, Session
from train.role_eval import EXACT
from train.sessions import SessionSet

log = logging.getLogger(__name__)


@dataclass
class MerchRow:
    weight: float
    hr: float
    mrr: float
    mean_margin: float
    hit_margin: float  # per 1,000 positions
    positions: int


def business_value(top: list[int], target: int, margin: np.ndarray,
                   price: np.ndarray) -> tuple[float, float]:
    """(mean margin of the top, price * margin of the target if shown;
    unknown values count 0)."""
    m = np.nan_to_num(margin[top]) if top else np.zeros(1)
    hit = 0.0
    if target in top:
        hit = float(np.nan_to_num(price[target] * margin[target]))
    return float(m.mean()), hit


def replay(engine: Engine, sessions: SessionSet, weight: float,
           k: int) -> MerchRow:
    b = engine.business
    hits, rr, margins, value = [], [], [], 0.0
    for items, types in zip(sessions.items, sessions.types):
        session = Session("merch")
        for t in range(len(items) - 1):
            ev = Event(str(t), float(t), "purchase", int(items[t]))
            session_roles.apply(session, ev, engine.role_of(ev.item))
            session.events.append(ev)
            top = [a.item for a in engine.recommend(session, k).items]
            target = int(items[t + 1])
            rank = top.index(target) + 1 if target in top else 0
            hits.append(rank > 0)
            rr.append(1.0 / rank if rank else 0.0)
            mean_margin, hit = business_value(top, target, b.margin,
                                              b.price)
            margins.append(mean_margin)
            value += hit
    n = max(len(hits), 1)
    return MerchRow(weight, float(np.mean(hits or [0])),
                    float(np.mean(rr or [0])),
                    float(np.mean(margins or [0])), 1000 * value / n,
                    len(hits))


def choose_weight(rows: list[MerchRow], tolerance: float) -> float:
    """The largest weight whose HR stays within tolerance of weight
    0's (the first row's)."""
    floor = rows[0].hr * (1.0 - tolerance)
    return max(r.weight for r in rows if r.hr >= floor)


def evaluate_margin(bundle: Bundle, ranking: RankingConfig,
                    valid: SessionSet, test: SessionSet,
                    cfg: MerchConfig) -> str:
    weights = sorted(set(cfg.margin_weights) | {0.0})
    engines = {w: Engine(bundle, replace(ranking, margin_weight=w), EXACT)
               for w in weights}
    chosen_on = [replay(engines[w], valid, w, cfg.k) for w in weights]
    for r in chosen_on:
        log.info("merch validation, margin weight %.2f: HR@%d %.4f, "
                 "mean margin %.4f", r.weight, cfg.k, r.hr,
                 r.mean_margin)
    best = choose_weight(chosen_on, cfg.hr_tolerance)
    rows = [replay(engines[w], test, w, cfg.k) for w in weights]
    k = cfg.k
    lines = [f"**H&M test day, accuracy against margin** ({len(test):,} "
             f"sessions, {rows[0].positions:,} positions; margin weight "
             f"{best:g} chosen on the validation day: the largest within "
             f"{cfg.hr_tolerance:.0%} of weight 0's HR@{k})", "",
             f"| margin weight | HR@{k} | MRR@{k} | mean margin of the "
             f"top {k} | hit margin per 1,000 positions | valid HR@{k} |",
             "|---|---|---|---|---|---|"]
    for r, v in zip(rows, chosen_on):
        mark = " (chosen)" if r.weight == best else ""
        lines.append(f"| {r.weight:g}{mark} | {r.hr:.4f} | {r.mrr:.4f} | "
                     f"{r.mean_margin:.4f} | {r.hit_margin:.3f} | "
                     f"{v.hr:.4f} |")
    return "\n".join(lines)
