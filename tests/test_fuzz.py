"""Fuzzing with bounded time: the API from its own /openapi.json
(schemathesis, valid and invalid requests against a real server), and
the session logic's invariants (hypothesis).

Runs derandomized, so a failure reproduces; ROLECALL_FUZZ_EXAMPLES
raises the examples per operation and mode for a longer hunt.
"""

import json
import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis import GenerationMode

from rolecall.roles import Role, same_person
from serve import session_roles
from serve.sessions import Event, MemoryStore, Session
from servers import start_server, stop

FUZZ_EXAMPLES = int(os.environ.get("ROLECALL_FUZZ_EXAMPLES", "25"))
BOUNDED = settings(deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


# ---- the API, from its description ----


@pytest.fixture(scope="module")
def server(tiny_bundle, db_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    proc, base = start_server(
        tiny_bundle, tmp, "fuzz", f"data.duckdb_path={db_path}",
        f"serve.event_log_dir={tmp / 'events'}",
        f"serve.forgotten_path={tmp / 'forgotten.txt'}")
    yield base
    stop(proc)


def test_api_fuzzed_from_its_openapi_answers_no_5xx(server, capsys):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    http = requests.Session()
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    for op in operations:
        for mode in GenerationMode:

            @settings(BOUNDED, max_examples=FUZZ_EXAMPLES)
            @given(case=op.as_strategy(generation_mode=mode))
            def fuzz(case):
                r = case.call(base_url=server, session=http, timeout=30)
                statuses[r.status_code] += 1
                if r.status_code >= 500:
                    server_errors.append(
                        f"{r.status_code} {r.text[:200]}\n  "
                        f"{case.as_curl_command()}")
            try:
                fuzz()
            except Unsatisfiable:
                # Nothing to make invalid: no parameters, or only a
                # free string in the path.
                assert mode is GenerationMode.NEGATIVE, op.label
    sent = sum(statuses.values())
    with capsys.disabled():  # the figure a reader of the run wants
        print(f"\nfuzz: {sent} requests over {len(operations)} "
              f"operations, valid and invalid; answers "
              f"{dict(sorted(statuses.items()))}; 5xx: "
              f"{len(server_errors)}")
    assert sent >= len(operations)
    assert not server_errors, "\n".join(server_errors[:10])


# ---- session logic ----

# Decisive roles, some with a child's size band, and undecided ones.
PEOPLE = [Role("women", "adult"), Role("men", "adult"),
          Role("girls", "child"), Role("boys", "child"),
          Role("unisex", "child"), Role("unisex", "baby"),
          Role("girls", "teen"), Role("boys", "teen")]
BANDS = [None, "92-104", "110-116", "134-170"]
roles = st.one_of(
    st.just(Role()), st.just(Role("unisex", None)),
    st.builds(lambda r, b: Role(r.gender, r.age_group,
                                b if r.age_group != "adult" else None),
              st.sampled_from(PEOPLE), st.sampled_from(BANDS)))
filter_values = {
    "gender": st.sampled_from(["women", "Men", "girls", "boys", "kids",
                               "baby", "unisex", "dog"]),
    "age_group": st.sampled_from(["adult", "child", "teen", "baby",
                                  "old"]),
    "size": st.text(min_size=0, max_size=24)}
filters = st.fixed_dictionaries({}, optional=filter_values)
steps = st.one_of(
    st.tuples(st.sampled_from(["view", "click", "cart", "purchase"]),
              st.none(), roles),
    st.tuples(st.just("filter"), filters, st.none()),
    st.tuples(st.sampled_from(["login", "logout"]), st.none(),
              st.none()))


def _event(i: int, kind: str, filters: dict | None) -> Event:
    item = i if kind in ("view", "click", "cart", "purchase") else None
    return Event(f"e{i}", float(i), kind, item=item, filters=filters)


@settings(BOUNDED, max_examples=300)
@given(st.lists(steps, max_size=60), st.integers(1, 20))
def test_a_session_keeps_at_most_the_cap_and_consistent_roles(events,
                                                              cap):
    session = Session("p")
    for i, (kind, filt, role) in enumerate(events):
        event = _event(i, kind, filt)
        change = session_roles.record(session, event, role, cap, float(i))
        assert len(session.events) == min(i + 1, cap)
        assert session.events[-1] is event and session.last_seen == i
        if session.active_role is not None:
            assert session.active_role in session.roles
        assert all(e.role is None or e.role in session.roles
                   for e in session.events)
        if change.switched:
            assert change.previous not in (None, session.active_role)
        size = session.roles.get(session.active_role, {}).get("size")
        assert size is None or len(size) <= 16


FILTER_NAMES = {"women": Role("women", "adult"),
                "men": Role("men", "adult"),
                "girls": Role("girls", "child"),
                "boys": Role("boys", "child")}


@settings(BOUNDED, max_examples=300)
@given(st.sampled_from(sorted(FILTER_NAMES)),
       st.text(min_size=1, max_size=20), st.data())
def test_returning_to_a_role_brings_its_size_back(name, size, data):
    """A size set for one person survives any detour through other
    people (and their own sizes) and is there again on return."""
    person = FILTER_NAMES[name]
    others = [r for r in PEOPLE if not same_person(person, r)]
    detour_roles = st.one_of(st.just(Role()), st.sampled_from(others),
                             st.builds(lambda r, b: Role(
                                 r.gender, r.age_group, b),
                                 st.sampled_from(others),
                                 st.sampled_from(BANDS)))
    detour = data.draw(st.lists(st.one_of(
        st.tuples(st.just("click"), st.none(), detour_roles),
        st.tuples(st.just("filter"), st.fixed_dictionaries(
            {"size": st.text(min_size=1, max_size=8)}), st.none())),
        max_size=20))
    session = Session("p")
    session_roles.record(session, _event(0, "filter", {
        "gender": name, "size": size}), None, 200, 0.0)
    assert session.active_role == person.key
    leave = session_roles.record(session, _event(1, "click", None),
                                 data.draw(st.sampled_from(others)),
                                 200, 1.0)
    assert leave.switched
    for i, (kind, filt, role) in enumerate(detour, start=2):
        session_roles.record(session, _event(i, kind, filt), role, 200,
                             float(i))
    back = session_roles.record(session, _event(99, "click", None),
                                person, 200, 99.0)
    assert back.switched and session.active_role == person.key
    assert session.roles[person.key]["size"] == size[:16]


@settings(BOUNDED, max_examples=200)
@given(st.integers(1, 8), st.integers(1, 30), st.lists(st.tuples(
    st.sampled_from(["put", "get", "delete", "wait"]),
    st.integers(0, 12)), max_size=80))
def test_the_store_never_holds_more_than_its_cap_nor_a_stale_session(
        cap, ttl, ops):
    now = [0.0]
    store = MemoryStore(max_sessions=cap, ttl_s=ttl, expire_per_put=2,
                        clock=lambda: now[0])
    order: list[str] = []  # sessions in write order, as the model
    put_at: dict[str, float] = {}
    for op, n in ops:
        sid = f"s{n}"
        if op == "wait":
            now[0] += n
        elif op == "put":
            store.put(Session(sid, last_seen=now[0]))
            order = [s for s in order if s != sid] + [sid]
            put_at[sid] = now[0]
        elif op == "delete":
            store.delete(sid)
            order = [s for s in order if s != sid]
        else:
            got = store.get(sid)
            later = len(order) - 1 - order.index(sid) if sid in order \
                else None
            fresh = sid in put_at and now[0] - put_at[sid] <= ttl
            kept = later is not None and later < cap and fresh
            assert (got is not None) == kept
        assert len(store) <= cap
        assert all(now[0] - s.last_seen <= ttl for _, s in store.items())


text = st.text(max_size=12)
events = st.builds(
    Event, event_id=text, ts=st.floats(0, 4e9), event_type=text,
    item=st.none() | st.integers(0, 10**6),
    filters=st.none() | st.dictionaries(text, text, max_size=3),
    user_id=st.none() | text, role=st.none() | text)
sessions = st.builds(
    Session, session_id=text, user_id=st.none() | text,
    device_id=st.none() | text, events=st.lists(events, max_size=5),
    last_seen=st.floats(0, 4e9), active_role=st.none() | text,
    roles=st.dictionaries(text, st.fixed_dictionaries({
        "gender": st.none() | text, "age_group": st.none() | text,
        "size": st.none() | text}), max_size=3))


@settings(BOUNDED, max_examples=200)
@given(sessions)
def test_a_session_round_trips_through_json(session):
    """What the Redis store writes and reads back is the same session."""
    wire = json.dumps(session.to_dict(), allow_nan=False)
    assert Session.from_dict(json.loads(wire)) == session
