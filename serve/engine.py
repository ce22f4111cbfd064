"""Per click: encode the session, retrieve items and look-alikes, blend.

The engine owns the loaded bundle. Everything per request works on a
handful of small arrays; whole-catalogue arrays are prepared once here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from rolecall.bundle import Bundle
from rolecall.config import RankingConfig, ServeConfig
from rolecall.events import EVENT_INDEX
from rolecall.index import build_index, choose
from rolecall.roles import Role, active_first, size_fits
from rolecall.scoring import blend, softmax, top_k
from serve import session_roles
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
    history: float = 0.0  # share from the linked customer's history


@dataclass
class Answer:
    items: list[Scored]
    role: Role | None
    timing_ms: dict[str, float]


class Engine:
    def __init__(self, bundle: Bundle, ranking: RankingConfig,
                 serve: ServeConfig | None = None):
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
        serve = serve or ServeConfig()
        self._use_indexes(serve)
        self._drop_forgotten(serve.forgotten_path)
        self.names = bundle.items["name"]
        self.genders = bundle.items["gender"]
        self.ages = bundle.items["age_group"]
        self.index = {item: i for i, item in enumerate(bundle.item_ids)}
        # The cold start answer: the items the model rates likeliest a
        # priori (their bias), what an empty session would be shown.
        self.prior_order = np.argsort(-vecs[:, -1], kind="stable")
        self.popular = self.prior_order[:1000]
        self.genders_a = np.array(self.genders, dtype=object)
        self.ages = np.array(self.ages, dtype=object)
        self.no_age = np.array([a is None for a in self.ages])
        self.any_gender = np.array([g in (None, "unisex")
                                    for g in self.genders])
        self.sizes = bundle.items.get("sizes") or [[]] * len(vecs)
        self._fit_cache: dict[tuple, np.ndarray] = {}

    def _drop_forgotten(self, path: str) -> None:
        """Forgotten customers stay forgotten across loads and swaps."""
        from serve.identity import forgotten_hashes, session_hash
        gone = forgotten_hashes(path)
        if not gone:
            return
        bank = self.bundle.bank
        ids = {s for s in bank.session_ids if session_hash(s) in gone}
        n = bank.forget(ids)
        log.info("look-alike bank: %d states of forgotten customers "
                 "silenced", n)

    def _use_indexes(self, serve: ServeConfig) -> None:
        """Approximate indexes for large catalogues and banks (issue 7)."""
        vecs, params = self.bundle.item_vectors, serve.index
        self.item_index = self.bundle.item_index  # exact, as exported
        if choose(serve.item_index, len(vecs), params) != "flat":
            self.item_index = build_index(vecs, serve.item_index, params,
                                          k=self.ranking.candidates)
        bank = self.bundle.bank
        if choose(serve.lookalike_index, len(bank), params) != "flat":
            bank.reindex(serve.lookalike_index, params,
                         k=self.ranking.lookalikes)

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

    def recommend(self, session: Session, k: int,
                  history: list[int] | None = None) -> Answer:
        """Top k for the session. `history` (catalogue indices, oldest
        first) is what the linked customer did before this session: its
        last `history_events` are encoded before the session's own, and
        its recency-weighted distribution takes `history_weight` of the
        score."""
        events = session.item_events()
        role = session_roles.active(session)
        past = list(history or [])[-self.ranking.history_recent:]
        encoded = past[-self.ranking.history_events:] \
            if self.ranking.history_events > 0 else []
        order = list(range(len(events)))
        if self.ranking.role_encoding != "off":
            order = active_first([e.role for e in events],
                                 session.active_role)
        if self.ranking.role_encoding == "active_only":
            mine = [i for i in order
                    if events[i].role in (None, session.active_role)]
            # A role named only by a filter has no events of its own
            # yet: keep the whole session, active role last.
            order = mine or order
            encoded = [i for i in encoded if self.fits_item(role, i)]
        own = [events[i].item for i in order]
        items = encoded + own
        types = ([EVENT_INDEX["purchase"]] * len(encoded)
                 + [EVENT_INDEX[events[i].event_type] for i in order])
        seen = np.array(own) if self.exclude_seen and own else None
        timing: dict[str, float] = {}
        if items:
            I, p, votes, neighbours = self._retrieve(items, types, timing)
        else:  # nothing to encode: a cold start, or history alone
            I, p = np.zeros(0, np.int64), np.zeros(0)
            votes, neighbours = sp.csr_matrix((1, 0)), np.zeros(0, int)
        t1 = time.perf_counter()
        cand, _, m, v = blend(I, p, votes.indices, votes.data,
                              self.weight, seen)
        hist = np.zeros(len(cand))
        if past and self.ranking.history_weight > 0:
            cand, m, v, hist = self._add_history(past, cand, m, v, seen)
        cand, m, v, hist = self._follow_role(role, cand, m, v, hist)
        score = m + v + hist
        best = top_k(cand, score, k)
        answer = [Scored(int(cand[j]), float(score[j]), float(m[j]),
                         float(v[j]), "", history=float(hist[j]))
                  for j in best]
        self._explain(answer, items, neighbours)
        if len(answer) < k:
            skip = {a.item for a in answer} | set(items)
            answer += self._backfill(k - len(answer), skip, role)
        if items:
            timing["rank"] = _ms(time.perf_counter() - t1)
        return Answer(answer, role, timing)

    def _retrieve(self, items: list[int], types: list[int],
                  timing: dict[str, float]) -> tuple:
        """Encode, then search: the top items with their model
        probabilities, the look-alikes' votes, and who voted."""
        t0 = time.perf_counter()
        xq = self.encode(items, types)[None, :].astype(np.float32)
        t1 = time.perf_counter()
        D, I = self.item_index.search(xq, self.ranking.candidates)
        t2 = time.perf_counter()
        Db, Ib = self.bundle.bank.search(xq[:, :-1],
                                         self.ranking.lookalikes)
        votes = self.bundle.bank.votes(Db, Ib).getrow(0)
        t3 = time.perf_counter()
        timing.update(encode=_ms(t1 - t0), item_search=_ms(t2 - t1),
                      lookalike_search=_ms(t3 - t2))
        return I[0], softmax(D[0].astype(np.float64)), votes, Ib[0]

    def fits(self, role: Role | None) -> np.ndarray | None:
        """Catalogue mask of items that suit the role (cached per role)."""
        if role is None or self.ranking.role_mode == "off":
            return None
        size = role.size if self.ranking.size_filter else None
        key = (role.gender, role.age_group, size)
        mask = self._fit_cache.get(key)
        if mask is None:
            age_ok = (self.ages == role.age_group) | self.no_age
            if role.gender in (None, "unisex"):
                gender_ok = np.ones(len(self.ages), bool)
            else:
                gender_ok = (self.genders_a == role.gender) | self.any_gender
            mask = age_ok & gender_ok
            if size is not None:
                mask &= np.array([size_fits(size, s) for s in self.sizes])
            self._fit_cache[key] = mask
        return mask

    def _add_history(self, past, cand, m, v, seen):
        """The customer's own past items as a third part of the score:
        h * (recency-weighted share of each past item); model and
        look-alikes shrink by (1 - h), so the parts still add up."""
        h = self.ranking.history_weight
        w = self.ranking.history_decay ** np.arange(len(past))[::-1]
        hist_items, inv = np.unique(np.array(past), return_inverse=True)
        hist_p = np.bincount(inv, weights=w) / w.sum()
        keep = ~np.isin(hist_items, seen) if seen is not None else \
            np.ones(len(hist_items), bool)
        hist_items, hist_p = hist_items[keep], hist_p[keep]
        items = np.concatenate([cand, hist_items])
        mm = np.concatenate([m * (1 - h), np.zeros(len(hist_items))])
        vv = np.concatenate([v * (1 - h), np.zeros(len(hist_items))])
        hh = np.concatenate([np.zeros(len(cand)), h * hist_p])
        items, inv = np.unique(items, return_inverse=True)
        mm = np.bincount(inv, weights=mm, minlength=len(items))
        vv = np.bincount(inv, weights=vv, minlength=len(items))
        hh = np.bincount(inv, weights=hh, minlength=len(items))
        return items, mm, vv, hh

    def fits_item(self, role: Role | None, item: int) -> bool:
        mask = self.fits(role)
        return True if mask is None else bool(mask[item])

    def _follow_role(self, role, cand, *parts):
        """Drop (filter) or shrink (demote) the items that do not fit."""
        mask = self.fits(role)
        if mask is None:
            return (cand, *parts)
        ok = mask[cand]
        if self.ranking.role_mode == "filter":
            return (cand[ok], *(p[ok] for p in parts))
        factor = np.where(ok, 1.0, self.ranking.role_demotion)
        return (cand, *(p * factor for p in parts))

    def _explain(self, answer: list[Scored], items: list[int],
                 neighbours: np.ndarray) -> None:
        """Name the evidence: voting look-alikes or the closest click."""
        if not answer:
            return
        rec = np.array([a.item for a in answer])
        if items:
            sims = self.unit_v[rec] @ self.unit_v[items].T  # (K, L)
            closest = np.array(items)[sims.argmax(axis=1)]
        else:
            closest = [None] * len(answer)
        sessions = self.bundle.bank.session_ids
        valid = neighbours[neighbours >= 0]
        # One sparse slice for all answers: a column slice per answer
        # cost ~0.25 ms each, 5 ms a click (bench, issue 7).
        voted = self.bundle.bank.futures[valid][:, rec].toarray() > 0
        for j, (a, near) in enumerate(zip(answer, closest)):
            voters = valid[voted[:, j]]
            a.voters = [sessions[s] for s in voters[:3]]
            if a.history > max(a.model, a.lookalikes):
                a.reason = "from your earlier shopping"
            elif a.lookalikes >= a.model and len(voters):
                n = len(voters)
                a.reason = (f"{n} look-alike session{'s' if n > 1 else ''}"
                            " went on to buy it")
            else:
                name = self.names[near] if near is not None else None
                a.reason = f"goes with {name or 'your click'}"

    def _backfill(self, k: int, skip: set[int],
                  role: Role | None) -> list[Scored]:
        """Most likely items a priori that suit the role: fills the
        answer up to k when the blend offers fewer eligible items."""
        mask = self.fits(role)
        picks = []
        for i in self.prior_order:
            i = int(i)
            if i not in skip and (mask is None or mask[i]):
                picks.append(i)
                if len(picks) == k:
                    break
        return [Scored(i, 0.0, 0.0, 0.0, "popular right now")
                for i in picks]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
