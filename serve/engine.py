"""Per click: encode the session, retrieve items and look-alikes, blend,
then rank (business parts, hard filters, diversity, backfill).

The engine owns the loaded bundle. Everything per request works on a
handful of small arrays; whole-catalogue arrays are prepared once here
and kept current, item by item, when the live catalogue changes
(serve/live_catalog.py).
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
from rolecall.device import resolve_device
from rolecall.index import build_index, choose, on_gpu
from rolecall.lookalikes import Votes
from rolecall.merch import SIGNALS, SignalParams, day_number, signals
from rolecall.model import LastState
from rolecall.roles import Role, active_first, derive_role, size_fits
from rolecall.scoring import blend, diverse, softmax, top_k
from serve import session_roles
from serve.sessions import Session

log = logging.getLogger(__name__)


@dataclass
class Scored:
    item: int
    score: float  # model + lookalikes + history + business, in that order
    model: float
    lookalikes: float
    reason: str
    voters: list[str] = field(default_factory=list)
    history: float = 0.0  # share from the linked customer's history
    business: float = 0.0  # merchandising boosts: the sum of `signals`
    signals: dict[str, float] = field(default_factory=dict)
    backfill: bool = False  # filled in from the prior order
    evidence: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Where:
    """A request's own filters, hard like stock: an item that fails one
    is never shown. An unknown price fails a price bound."""

    price_min: float | None = None
    price_max: float | None = None
    product_type: str | None = None
    department: str | None = None
    campaign: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (
            self.price_min, self.price_max, self.product_type,
            self.department, self.campaign))


@dataclass
class Query:
    """What one click asks of retrieval, and what ranking needs after."""

    items: list[int]  # catalogue indices to encode, oldest first
    types: list[int]  # event type index of each
    own: list[int]  # this session's items among them
    past: list[int]  # the linked customer's recent history
    role: Role | None
    where: Where | None = None  # the request's own filters


# top items and their model probabilities, the look-alikes' votes
Found = tuple[np.ndarray, np.ndarray, Votes]


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
        serve = serve or ServeConfig()
        self.device = resolve_device(serve.device)
        bundle.model.to(self.device)
        vecs = bundle.item_vectors
        self.item_v = torch.from_numpy(
            np.ascontiguousarray(vecs[:, :-1])).to(self.device)
        # One click on a CPU encodes in numpy (LastState); a GPU keeps
        # torch, where batches of clicks pay.
        self.last_state = (LastState(bundle.model.session,
                                     serve.encoder_cache)
                           if self.device.type == "cpu" else None)
        self.unit_v = vecs[:, :-1] / np.maximum(
            np.linalg.norm(vecs[:, :-1], axis=1, keepdims=True), 1e-12)
        self._use_indexes(serve)
        self._drop_forgotten(serve.forgotten_path)
        self.names = bundle.items["name"]
        self.genders = bundle.items["gender"]
        self.index = {item: i for i, item in enumerate(bundle.item_ids)}
        self.n_bundled = len(bundle.item_ids)  # before live additions
        # Counts live changes of known items' attributes: the browsing
        # catalogue (serve/catalog_routes.py) rebuilds when it moves.
        self.attribute_changes = 0
        self._order_by_prior()
        self.business = bundle.business
        self._fit_cache: dict[tuple, np.ndarray] = {}
        self._prepare_items()

    def _order_by_prior(self) -> None:
        # The cold start answer: the items the model rates likeliest a
        # priori (their bias), what an empty session would be shown.
        self.prior_order = np.argsort(-self.bundle.item_vectors[:, -1],
                                      kind="stable")
        self.popular = self.prior_order[:1000]

    def _prepare_items(self) -> None:
        """Whole-catalogue arrays for filters and business signals."""
        r, n = self.ranking, len(self.bundle.item_ids)
        self.genders_a = np.empty(n, dtype=object)
        self.ages = np.empty(n, dtype=object)
        self.no_age = np.zeros(n, bool)
        self.any_gender = np.zeros(n, bool)
        self.sizes: list[list[str]] = list(
            self.bundle.items.get("sizes") or [[]] * n)
        self.in_stock = np.ones(n, bool)
        # Product type and department as codes (-1: unknown): filters
        # and the diversity cap compare ints, not strings.
        self.codes = {c: ({}, np.full(n, -1, np.int64))
                      for c in ("product_type", "department")}
        self.merch_w = np.array([r.margin_weight, r.new_arrival_weight,
                                 r.campaign_weight, r.stock_weight])
        arrivals = self.business.arrival
        as_of = (day_number(r.new_arrival_as_of) if r.new_arrival_as_of
                 else np.nanmax(arrivals) if np.isfinite(arrivals).any()
                 else np.nan)
        self.signal_params = SignalParams(
            r.new_arrival_days, as_of, frozenset(r.campaign_tags),
            r.stock_full)
        self.signals = np.zeros((n, len(SIGNALS)))
        self._tagged: dict[str, np.ndarray] = {}
        self.refresh(np.arange(n))

    def refresh(self, idx) -> None:
        """Re-derive the per-item arrays of items idx from the bundle's
        columns and business data, with the cached role masks: called
        after every live catalogue change, so the next request sees it."""
        idx = np.asarray(idx, dtype=np.int64)
        items, b = self.bundle.items, self.business
        self._grow(len(self.bundle.item_ids))
        for i in idx.tolist():
            g, a = items["gender"][i], items["age_group"][i]
            self.genders_a[i], self.ages[i] = g, a
            self.no_age[i] = a is None
            self.any_gender[i] = g in (None, "unisex")
            sizes = b.sizes_in_stock(i)
            if sizes is not None:
                self.sizes[i] = sizes
            self.in_stock[i] = b.in_stock(i)
            for col, (vocab, codes) in self.codes.items():
                value = items[col][i] if col in items else None
                codes[i] = (-1 if value is None
                            else vocab.setdefault(value, len(vocab)))
        if self.merch_w.any():
            self.signals[idx] = signals(b, idx, self.signal_params)
        for tag, mask in self._tagged.items():
            mask[idx] = [tag in b.campaigns[i] for i in idx.tolist()]
        for key, mask in self._fit_cache.items():
            mask[idx] = self._fit_rows(key, idx)

    def _grow(self, n: int) -> None:
        """Lengthen the per-item arrays to n items (new rows blank)."""
        extra = n - len(self.in_stock)
        if extra <= 0:
            return
        for name in ("genders_a", "ages"):
            setattr(self, name, np.concatenate(
                [getattr(self, name), np.empty(extra, dtype=object)]))
        for name in ("no_age", "any_gender", "in_stock"):
            setattr(self, name, np.concatenate(
                [getattr(self, name), np.ones(extra, bool)]))
        self.sizes += [[] for _ in range(extra)]
        for col, (vocab, codes) in self.codes.items():
            self.codes[col] = (vocab, np.concatenate(
                [codes, np.full(extra, -1, np.int64)]))
        self.signals = np.vstack(
            [self.signals, np.zeros((extra, len(SIGNALS)))])
        for tag in self._tagged:
            self._tagged[tag] = np.concatenate(
                [self._tagged[tag], np.zeros(extra, bool)])
        for key in self._fit_cache:
            self._fit_cache[key] = np.concatenate(
                [self._fit_cache[key], np.zeros(extra, bool)])

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
                                          k=self.ranking.candidates,
                                          cache_dir=serve.index_cache_dir)
        bank = self.bundle.bank
        if choose(serve.lookalike_index, len(bank), params) != "flat":
            bank.reindex(serve.lookalike_index, params,
                         k=self.ranking.lookalikes,
                         cache_dir=serve.index_cache_dir)
        self.item_index = on_gpu(self.item_index, self.device)
        bank.index = on_gpu(bank.index, self.device)

    @property
    def version(self) -> str:
        return self.bundle.version

    def role_of(self, item: int) -> Role:
        return Role(self.genders[item], self.ages[item])


    def encode(self, items: list[int], types: list[int]) -> np.ndarray:
        """State [u, 1] after the last of the given events."""
        items, types = items[-self.max_len:], types[-self.max_len:]
        if self.last_state is not None:  # shares item_v's memory
            return self.last_state(self.item_v.numpy(), items, types)
        return self._encode_torch(items, types)

    @torch.inference_mode()
    def _encode_torch(self, items: list[int], types: list[int]
                      ) -> np.ndarray:
        idx = torch.tensor(items, device=self.device)
        typ = torch.tensor(types, device=self.device)
        return self.bundle.model.session.last(self.item_v[idx],
                                              typ).cpu().numpy()

    def recommend(self, session: Session, k: int,
                  history: list[int] | None = None,
                  where: Where | None = None) -> Answer:
        """Top k for the session. `history` (catalogue indices, oldest
        first) is what the linked customer did before this session: its
        last `history_events` are encoded before the session's own, and
        its recency-weighted distribution takes `history_weight` of the
        score. `where`: the request's own filters."""
        query = self.query(session, history, where)
        timing: dict[str, float] = {}
        found = self.retrieve(query.items, query.types, timing) \
            if query.items else None
        return self.answer(query, k, found, timing)

    def query(self, session: Session, history: list[int] | None = None,
              where: Where | None = None) -> Query:
        """The events to encode for this click, in encoding order, and
        what ranking needs after retrieval."""
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
        types = ([EVENT_INDEX["purchase"]] * len(encoded)
                 + [EVENT_INDEX[events[i].event_type] for i in order])
        return Query(encoded + own, types, own, past, role, where)

    def answer(self, query: Query, k: int, found: Found | None,
               timing: dict[str, float]) -> Answer:
        """Blend what retrieval found into the top k, with reasons."""
        items, own, past, role = (query.items, query.own, query.past,
                                  query.role)
        seen = np.array(own) if self.exclude_seen and own else None
        if found is not None:
            I, p, votes = found
        else:  # nothing to encode: a cold start, or history alone
            I, p = np.zeros(0, np.int64), np.zeros(0)
            votes = Votes.none()
        t1 = time.perf_counter()
        cand, _, m, v = blend(I, p, votes.indices, votes.data,
                              self.weight, seen)
        hist = np.zeros(len(cand))
        if past and self.ranking.history_weight > 0:
            cand, m, v, hist = self._add_history(past, cand, m, v, seen)
        cand, m, v, hist = self._demote(role, cand, m, v, hist)
        answer = self._rank(cand, m, v, hist, k,
                            self.eligible(role, query.where), set(items))
        self._explain(answer, items, votes)
        if items:
            timing["rank"] = _ms(time.perf_counter() - t1)
        return Answer(answer, role, timing)

    def retrieve_many(self, queries: list[tuple[list[int], list[int]]]
                      ) -> list[Found]:
        """`retrieve` for several clicks at once: one padded pass through
        the session tower and one search per index for all of them, so a
        GPU (or a wide CPU) works on the batch instead of one row."""
        if not queries:
            return []
        xq = self.encode_many(queries)
        D, I = self.item_index.search(xq, self.ranking.candidates)
        Db, Ib = self.bundle.bank.search(xq[:, :-1],
                                         self.ranking.lookalikes)
        bank = self.bundle.bank
        return [(I[j], softmax(D[j].astype(np.float64)),
                 bank.votes_of(Db[j], Ib[j])) for j in range(len(queries))]

    @torch.inference_mode()
    def encode_many(self, queries: list[tuple[list[int], list[int]]]
                    ) -> np.ndarray:
        """(Q, d + 1) float32 states, right-padded into one batch: the
        session tower is causal, so padding after an event does not
        change the state at it."""
        seqs = [(items[-self.max_len:], types[-self.max_len:])
                for items, types in queries]
        L = max(len(i) for i, _ in seqs)
        idx = torch.zeros((len(seqs), L), dtype=torch.long)
        typ = torch.zeros((len(seqs), L), dtype=torch.long)
        mask = torch.zeros((len(seqs), L))
        for j, (items, types) in enumerate(seqs):
            idx[j, :len(items)] = torch.tensor(items)
            typ[j, :len(types)] = torch.tensor(types)
            mask[j, :len(items)] = 1.0
        idx, typ, mask = (t.to(self.device) for t in (idx, typ, mask))
        states = self.bundle.model.session(self.item_v[idx], typ, mask)
        last = torch.tensor([len(i) - 1 for i, _ in seqs],
                            device=self.device)
        out = states[torch.arange(len(seqs), device=self.device), last]
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)

    def retrieve(self, items: list[int], types: list[int],
                 timing: dict[str, float]) -> Found:
        """Encode, then search: the top items with their model
        probabilities, the look-alikes' votes, and who voted."""
        t0 = time.perf_counter()
        xq = self.encode(items, types)[None, :].astype(np.float32,
                                                      copy=False)
        t1 = time.perf_counter()
        D, I = self.item_index.search(xq, self.ranking.candidates)
        t2 = time.perf_counter()
        Db, Ib = self.bundle.bank.search(xq[:, :-1],
                                         self.ranking.lookalikes)
        votes = self.bundle.bank.votes_of(Db[0], Ib[0])
        t3 = time.perf_counter()
        timing.update(encode=_ms(t1 - t0), item_search=_ms(t2 - t1),
                      lookalike_search=_ms(t3 - t2))
        return I[0], softmax(D[0].astype(np.float64)), votes

    def fits(self, role: Role | None) -> np.ndarray | None:
        """Catalogue mask of items that suit the role (cached per role)."""
        if role is None or self.ranking.role_mode == "off":
            return None
        size = role.size if self.ranking.size_filter else None
        key = (role.gender, role.age_group, size)
        mask = self._fit_cache.get(key)
        if mask is None:
            mask = self._fit_rows(key, np.arange(len(self.ages)))
            self._fit_cache[key] = mask
        return mask

    def _fit_rows(self, key: tuple, idx: np.ndarray) -> np.ndarray:
        gender, age, size = key
        age_ok = (self.ages[idx] == age) | self.no_age[idx]
        if gender in (None, "unisex"):
            gender_ok = np.ones(len(idx), bool)
        else:
            gender_ok = ((self.genders_a[idx] == gender)
                         | self.any_gender[idx])
        mask = age_ok & gender_ok
        if size is not None:  # among the sizes in stock
            mask &= np.array([size_fits(size, self.sizes[i])
                              for i in idx.tolist()], bool)
        return mask

    def eligible(self, role: Role | None,
                 where: Where | None = None) -> np.ndarray:
        """Catalogue mask of what an answer may show: in stock, fitting
        the active role and its size (role_mode=filter), and passing
        the request's own filters. Nothing outside it is ever shown."""
        mask = self.in_stock
        if self.ranking.role_mode == "filter":
            fit = self.fits(role)
            if fit is not None:
                mask = mask & fit
        if where:
            mask = mask & self._where(where)
        return mask

    def _where(self, w: Where) -> np.ndarray:
        price = self.business.price
        mask = np.ones(len(price), bool)
        with np.errstate(invalid="ignore"):  # NaN (unknown) fails
            if w.price_min is not None:
                mask &= price >= w.price_min
            if w.price_max is not None:
                mask &= price <= w.price_max
        for col in ("product_type", "department"):
            value = getattr(w, col)
            if value is not None:
                vocab, codes = self.codes[col]
                mask &= codes == vocab.get(value, -2)
        if w.campaign is not None:
            mask &= self._tagged_with(w.campaign)
        return mask

    def _tagged_with(self, tag: str) -> np.ndarray:
        mask = self._tagged.get(tag)
        if mask is None:
            mask = np.array([tag in c for c in self.business.campaigns],
                            bool)
            if len(self._tagged) < 64:  # tags are few, requests are not
                self._tagged[tag] = mask
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

    def _demote(self, role, cand, *parts):
        """role_mode=demote: shrink the parts of items that do not fit
        the role. (role_mode=filter drops them, in eligible().)"""
        if self.ranking.role_mode != "demote":
            return (cand, *parts)
        mask = self.fits(role)
        if mask is None:
            return (cand, *parts)
        factor = np.where(mask[cand], 1.0, self.ranking.role_demotion)
        return (cand, *(p * factor for p in parts))

    def _rank(self, cand: np.ndarray, m: np.ndarray, v: np.ndarray,
              hist: np.ndarray, k: int, mask: np.ndarray,
              skip: set[int]) -> list[Scored]:
        """The ranking step after retrieval, all of it here.

        score = model + lookalikes + history (relevance) + business.
        Hard filters first: only items in `mask` (eligible()) stay.
        business = sum over signals of weight * signal * ref, where ref
        is the best relevance left (1 when none, as at a cold start), so
        a weight reads the same in every session. The top k by score,
        at most max_per_product_type of one product type. When the
        candidates cannot fill k, backfill adds the likeliest items a
        priori that pass the same filters and cap (relevance 0, their
        business part); only then does the cap give way. The answer is
        ordered by score; ties keep candidates first, backfill in prior
        order.

        Items added online join the pool with relevance 0 when
        retrieval did not find them: without a trained id the model
        rarely ranks them among its candidates, and a business weight
        (new arrivals, a campaign) is how a merchandiser lifts them.
        """
        fresh = np.arange(max(self.n_bundled, len(self.in_stock)
                              - self.ranking.fresh_pool),
                          len(self.in_stock))
        if len(fresh):  # isin costs ~0.1 ms even on nothing
            fresh = fresh[~np.isin(fresh, cand)]
        if len(fresh) and skip:
            fresh = fresh[~np.isin(fresh, list(skip))]
        if len(fresh):
            zero = np.zeros(len(fresh))
            cand = np.concatenate([cand, fresh])
            m, v, hist = (np.concatenate([x, zero]) for x in (m, v, hist))
        ok = mask[cand]
        cand, m, v, hist = cand[ok], m[ok], v[ok], hist[ok]
        relevance = m + v + hist
        best = float(relevance.max()) if len(cand) else 0.0
        ref = best if best > 0 else 1.0
        contrib = self._business(cand, ref)
        score = relevance + (contrib[:, 0] + contrib[:, 1]
                             + contrib[:, 2] + contrib[:, 3])
        order = top_k(cand, score, len(cand))
        cap = self.ranking.max_per_product_type
        groups, counts = self.codes["product_type"][1], {}
        taken, capped = diverse(cand[order], groups, k, cap, counts)
        out = self._scored(cand, m, v, hist, contrib, order[taken])
        if len(out) < k:
            skip = skip | {a.item for a in out}
            pool = self.prior_order[mask[self.prior_order]]
            got, spare = diverse(pool, groups, k - len(out), cap, counts,
                                 skip)
            out += self._backfill(pool[got], ref)
            short = k - len(out)
            if short > 0:  # the cap gives way: nothing else is eligible
                out += self._scored(cand, m, v, hist, contrib,
                                    order[capped[:short]])
                # A capped candidate is in the pool too, and so among
                # spare: shown once.
                shown = {a.item for a in out}
                spare = [p for p in spare if int(pool[p]) not in shown]
                out += self._backfill(pool[spare[:k - len(out)]], ref)
        return sorted(out, key=lambda a: -a.score)  # stable

    def _business(self, items: np.ndarray, ref: float) -> np.ndarray:
        """(len(items), 4) each signal's part of the score."""
        if not self.merch_w.any():
            return np.zeros((len(items), len(SIGNALS)))
        return self.signals[items] * (self.merch_w * ref)

    def _scored(self, cand, m, v, h, contrib, rows,
                backfill: bool = False) -> list[Scored]:
        """Scored items of the given rows, parts as Python floats summed
        in the order _rank sums them."""
        rows = np.asarray(rows, dtype=np.int64)
        named = bool(self.merch_w.any())
        out = []
        for item, mi, vi, hi, c in zip(
                cand[rows].tolist(), m[rows].tolist(), v[rows].tolist(),
                h[rows].tolist(), contrib[rows].tolist()):
            b = ((c[0] + c[1]) + c[2]) + c[3]
            out.append(Scored(item, ((mi + vi) + hi) + b, mi, vi, "",
                              history=hi, business=b,
                              signals=dict(zip(SIGNALS, c)) if named
                              else {}, backfill=backfill))
        return out

    def _backfill(self, items: np.ndarray, ref: float) -> list[Scored]:
        """Likeliest items a priori that passed every filter: relevance
        0, and their business part like any other item."""
        zero = np.zeros(len(items))
        return self._scored(items, zero, zero, zero,
                            self._business(items, ref),
                            np.arange(len(items)), backfill=True)

    def _explain(self, answer: list[Scored], items: list[int],
                 votes: Votes) -> None:
        """Name the evidence of every part: the closest click (model),
        the voting look-alikes, the customer's history, the business
        signals; each with its share of the score."""
        if not answer:
            return
        rec = np.array([a.item for a in answer])
        if items:
            sims = self.unit_v[rec] @ self.unit_v[items].T  # (K, L)
            closest = np.array(items)[sims.argmax(axis=1)].tolist()
        else:
            closest = [None] * len(answer)
        sessions = self.bundle.bank.session_ids
        counts, firsts = votes.voters_of(rec, 3)
        for a, near, n, first in zip(answer, closest, counts, firsts):
            a.voters = [sessions[s] for s in first]
            name = self.names[near] if near is not None else None
            voted = (f"{n} look-alike session{'s' if n != 1 else ''} "
                     "went on to buy it")
            parts = [(p, x) for p, x in (
                ("model", a.model), ("lookalikes", a.lookalikes),
                ("history", a.history), ("business", a.business))
                if x != 0]
            parts.sort(key=_by_size)  # stable: ties keep this order
            a.evidence = []
            for p, x in parts:
                e = {"part": p, "share": x / a.score if a.score else 0.0}
                if p == "model":
                    e.update({"about": f"close to {name or 'your click'}",
                              "item_id": self.bundle.item_ids[near]}
                             if near is not None else
                             {"about": "the model's own pick"})
                elif p == "lookalikes":
                    e.update(about=voted, sessions=a.voters, voters=n)
                elif p == "history":
                    e["about"] = "from your earlier shopping"
                else:
                    e.update(about=self._business_reason(a),
                             signals=a.signals)
                a.evidence.append(e)
            top = parts[0][0] if parts else None
            if top == "business":
                a.reason = self._business_reason(a)
            elif a.backfill or top is None:
                a.reason = "popular right now"
            elif top == "history":
                a.reason = "from your earlier shopping"
            elif a.lookalikes >= a.model and n:
                a.reason = voted
            else:
                a.reason = f"goes with {name or 'your click'}"

    def _business_reason(self, a: Scored) -> str:
        if not a.signals or not a.business:
            return ""
        top = max(a.signals, key=lambda s: a.signals[s])
        if top == "campaign":
            tags = sorted(self.signal_params.campaign_tags.intersection(
                self.business.campaigns[a.item]))
            return f"in the {', '.join(tags)} campaign"
        return {"margin": "a high-margin pick", "new_arrival": "new in",
                "stock": "plenty in stock"}[top]

    def set_attributes(self, i: int, attrs: dict) -> None:
        """Change a catalogued item's attributes: its card, role and
        filters change at once; its embedding stays the trained one
        until the next training run."""
        if INDEX_FIELDS & attrs.keys():
            # A new index group (section, index name) is a new role
            # unless the change names the role's fields itself.
            items = self.bundle.items
            known = {c: items[c][i] for c in INDEX_FIELDS if c in items}
            derived = _with_role({**known, **attrs})
            attrs = {**attrs, **{c: derived[c] for c in ROLE_FIELDS
                                 if c not in attrs}}
        self._columns(attrs)
        for col, value in attrs.items():
            self.bundle.items[col][i] = value
        self.attribute_changes += bool(attrs)

    @torch.inference_mode()
    def add_items(self, rows: list[dict]) -> list[list[str]]:
        """Append new items (dicts of item_id and attributes), to be
        recommended from the next request on, without a restart.

        Each is embedded by the item tower from its attributes alone,
        through id row 0: the unknown id that training's id dropout
        taught the attribute path to stand in for. Its vector joins the
        item index (flat and HNSW both take adds, no rebuild) and every
        per-item array. Returns, per item, the attributes whose values
        the model has never seen (unknown in its embedding).
        """
        bundle, n = self.bundle, len(self.bundle.item_ids)
        rows = [_with_role(r) for r in rows]
        coded = [self._features(r) for r in rows]
        features = np.array([f for f, _ in coded], dtype=np.int64)
        features = features.reshape(len(rows), bundle.features.shape[1])
        ids = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        vecs = bundle.model.item(ids, torch.from_numpy(features).to(
            self.device)).float().cpu().numpy()
        self._columns({c: None for r in rows for c in r})
        for r in rows:
            bundle.item_ids.append(r["item_id"])  # items["item_id"] too
            self.index[r["item_id"]] = len(self.index)
            for col, values in bundle.items.items():
                if values is not bundle.item_ids:
                    values.append(r.get(col, [] if col == "sizes"
                                        else None))
        bundle.item_vectors = np.vstack([bundle.item_vectors, vecs])
        bundle.features = np.vstack([bundle.features, features])
        bundle.id_rows = np.concatenate(
            [bundle.id_rows, np.zeros(len(rows), bundle.id_rows.dtype)])
        self.item_v = torch.cat([self.item_v, torch.from_numpy(
            np.ascontiguousarray(vecs[:, :-1])).to(self.device)])
        self.unit_v = np.vstack([self.unit_v, vecs[:, :-1] / np.maximum(
            np.linalg.norm(vecs[:, :-1], axis=1, keepdims=True), 1e-12)])
        self.item_index.add(vecs)
        if bundle.item_index is not self.item_index:
            bundle.item_index.add(vecs)
        f = bundle.bank.futures  # no votes yet: only more columns
        bundle.bank.futures = sp.csr_matrix(
            (f.data, f.indices, f.indptr),
            shape=(f.shape[0], len(bundle.item_ids)))
        self.business.extend(len(rows))
        self._order_by_prior()
        self.refresh(np.arange(n, len(bundle.item_ids)))
        return [unknown for _, unknown in coded]

    def _columns(self, attrs: dict) -> None:
        """Attribute columns the bundle lacks, all unknown so far."""
        n = len(self.bundle.item_ids)
        for col in attrs:
            if col != "item_id" and col not in self.bundle.items:
                self.bundle.items[col] = [None] * n

    def _features(self, attrs: dict) -> tuple[list[int], list[str]]:
        """Item-tower codes of an item's attributes (0: unknown), and
        the attributes whose values the vocabularies lack."""
        codes, unknown = [], []
        for f, vocab in self.bundle.vocabs.items():
            value = attrs.get(f)
            code = vocab.index(value) if value in vocab[1:] else 0
            if value is not None and code == 0:
                unknown.append(f)
            codes.append(code)
        return codes, unknown


INDEX_FIELDS = frozenset({"index_group", "section", "index_name"})
ROLE_FIELDS = ("gender", "age_group", "size_band")


def _with_role(attrs: dict) -> dict:
    """Gender, age group and size band from the H&M index fields when a
    new item does not name them."""
    role = derive_role(attrs.get("index_group"), attrs.get("section"),
                       attrs.get("index_name"))
    out = dict(attrs)
    for col, value in zip(ROLE_FIELDS,
                          (role.gender, role.age_group, role.size)):
        out.setdefault(col, value)
    return out


def _by_size(part: tuple[str, float]) -> float:
    return -abs(part[1])


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
