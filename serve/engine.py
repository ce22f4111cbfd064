"""Per click: encode the session, retrieve items and look-alikes, blend.

The engine owns the loaded bundle. Everything per request works on a
handful of small arrays; whole-catalogue arrays are prepared once here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rolecall.bundle import Bundle
from rolecall.config import RankingConfig
from rolecall.events import EVENT_INDEX
from rolecall.roles import Role
from rolecall.scoring import blend, softmax, top_k
from serve.sessions import Session

log = logging.getLogger(__name__)


@dataclass
class Scored:
    item: int
    score: float
    model: float
    lookalikes: float
    reason: str
    voters: list[str] = field(default_factory=list)


@dataclass
class Answer:
    items: list[Scored]
    role: Role | None
    timing_ms: dict[str, float]


class Engine:
    def __init__(self, bundle: Bundle, ranking: RankingConfig):
        self.bundle = bundle
        self.ranking = ranking
        trained = bundle.config["ranking"]
        self.weight = (ranking.lookalike_weight
                       if ranking.lookalike_weight is not None
                       else bundle.manifest["metrics"]["lookalike_weight"])
        self.exclude_seen = bundle.config["data"]["exclude_seen"]
        self.max_len = bundle.config["data"]["max_session_len"]
        self.future_decay = trained["future_decay"]
        vecs = bundle.item_vectors
        self.item_v = torch.from_numpy(np.ascontiguousarray(vecs[:, :-1]))
        self.unit_v = vecs[:, :-1] / np.maximum(
            np.linalg.norm(vecs[:, :-1], axis=1, keepdims=True), 1e-12)
        self.item_index = bundle.item_index
        self.names = bundle.items["name"]
        self.genders = bundle.items["gender"]
        self.ages = bundle.items["age_group"]
        self.index = {item: i for i, item in enumerate(bundle.item_ids)}
        # The cold start answer: the items the model rates likeliest a
        # priori (their bias), what an empty session would be shown.
        self.popular = np.argsort(-vecs[:, -1], kind="stable")[:1000]

    @property
    def version(self) -> str:
        return self.bundle.version

    def role_of(self, item: int) -> Role:
        return Role(self.genders[item], self.ages[item])

    @torch.inference_mode()
    def encode(self, items: list[int], types: list[int]) -> np.ndarray:
        """State [u, 1] after the last of the given events."""
        idx = torch.tensor(items[-self.max_len:])
        typ = torch.tensor(types[-self.max_len:]).unsqueeze(0)
        x = self.item_v[idx].unsqueeze(0)  # (1, L, d)
        mask = torch.ones(typ.shape)
        states = self.bundle.model.session(x, typ, mask)
        return states[0, -1].numpy()

    def recommend(self, session: Session, k: int) -> Answer:
        t0 = time.perf_counter()
        events = session.item_events()
        timing: dict[str, float] = {}
        if not events:
            return Answer(self._cold(k), None, timing)
        items = [e.item for e in events]
        types = [EVENT_INDEX[e.event_type] for e in events]
        xq = self.encode(items, types)[None, :].astype(np.float32)
        t1 = time.perf_counter()
        D, I = self.item_index.search(xq, self.ranking.candidates)
        t2 = time.perf_counter()
        Db, Ib = self.bundle.bank.search(xq[:, :-1],
                                         self.ranking.lookalikes)
        votes = self.bundle.bank.votes(Db, Ib).getrow(0)
        t3 = time.perf_counter()
        seen = np.array(items) if self.exclude_seen else None
        cand, score, m, v = blend(I[0], softmax(D[0].astype(np.float64)),
                                  votes.indices, votes.data, self.weight,
                                  seen)
        best = top_k(cand, score, k)
        answer = [Scored(int(cand[j]), float(score[j]), float(m[j]),
                         float(v[j]), "") for j in best]
        self._explain(answer, items, Ib[0])
        if len(answer) < k:
            answer += self._cold(k - len(answer),
                                 skip={a.item for a in answer} | set(items))
        t4 = time.perf_counter()
        timing.update(encode=_ms(t1 - t0), item_search=_ms(t2 - t1),
                      lookalike_search=_ms(t3 - t2), rank=_ms(t4 - t3))
        return Answer(answer, self.role_of(items[-1]), timing)

    def _explain(self, answer: list[Scored], items: list[int],
                 neighbours: np.ndarray) -> None:
        """Name the evidence: voting look-alikes or the closest click."""
        if not answer:
            return
        rec = np.array([a.item for a in answer])
        sims = self.unit_v[rec] @ self.unit_v[items].T  # (K, L)
        closest = np.array(items)[sims.argmax(axis=1)]
        futures = self.bundle.bank.futures[neighbours[neighbours >= 0]]
        sessions = self.bundle.bank.session_ids
        valid = neighbours[neighbours >= 0]
        for a, near in zip(answer, closest):
            col = futures[:, a.item].toarray().ravel()
            voters = valid[col > 0]
            a.voters = [sessions[s] for s in voters[:3]]
            if a.lookalikes >= a.model and len(voters):
                a.reason = (f"{len(voters)} look-alike sessions went on "
                            f"to buy it")
            else:
                a.reason = f"goes with {self.names[near] or 'your click'}"

    def _cold(self, k: int, skip: set[int] | None = None) -> list[Scored]:
        skip = skip or set()
        picks = [int(i) for i in self.popular if int(i) not in skip][:k]
        return [Scored(i, 0.0, 0.0, 0.0, "popular right now")
                for i in picks]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
