"""Stitching: sessions and devices linked to customers at the click that
identifies them, and the customer history that comes with the link.

The graph lives in this process (see README, "not supported yet": it is
not yet shared through Redis; the session's own user_id is, since it is
part of the session).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)


@dataclass
class IdentityGraph:
    session_user: dict[str, str] = field(default_factory=dict)
    device_user: dict[str, str] = field(default_factory=dict)
    user_sessions: dict[str, set[str]] = field(
        default_factory=lambda: defaultdict(set))
    links: list[dict] = field(default_factory=list)  # the audit trail

    def link(self, session_id: str, user_id: str, device_id: str | None,
             via: str) -> bool:
        """Link; False when the session was already this customer's."""
        new = self.session_user.get(session_id) != user_id
        old = self.session_user.get(session_id)
        if old and old != user_id:
            self.user_sessions[old].discard(session_id)
        self.session_user[session_id] = user_id
        self.user_sessions[user_id].add(session_id)
        if device_id:
            self.device_user[device_id] = user_id
        if new:
            self.links.append({"ts": time.time(), "via": via,
                               "session_id": session_id,
                               "device_id": device_id,
                               "user_id": user_id})
        return new

    def unlink(self, session_id: str) -> str | None:
        user = self.session_user.pop(session_id, None)
        if user:
            self.user_sessions[user].discard(session_id)
            self.links.append({"ts": time.time(), "via": "logout",
                               "session_id": session_id,
                               "device_id": None, "user_id": user})
        return user

    def user_of_device(self, device_id: str | None) -> str | None:
        return self.device_user.get(device_id) if device_id else None

    def forget(self, user_id: str) -> dict[str, int]:
        sessions = self.user_sessions.pop(user_id, set())
        for s in sessions:
            self.session_user.pop(s, None)
        devices = [d for d, u in self.device_user.items() if u == user_id]
        for d in devices:
            del self.device_user[d]
        before = len(self.links)
        self.links = [x for x in self.links if x["user_id"] != user_id]
        return {"linked_sessions": len(sessions), "devices": len(devices),
                "link_records": before - len(self.links)}


class CustomerHistory:
    """Each known customer's past item events, oldest first (item ids).

    Read once from DuckDB at start; a login then costs a dict lookup.
    """

    def __init__(self, by_user: dict[str, list[str]] | None = None,
                 sessions: dict[str, list[str]] | None = None):
        self.by_user = by_user or {}
        self.sessions = sessions or {}  # user -> their past session ids

    @classmethod
    def load(cls, duckdb_path: str, dataset: str,
             per_user: int = 50) -> CustomerHistory:
        if not Path(duckdb_path).is_file():
            log.warning("no DuckDB file at %s: customers start without "
                        "history", duckdb_path)
            return cls()
        con = duckdb.connect(duckdb_path, read_only=True)
        try:
            rows = con.execute("""
                SELECT user_id, list(item_id ORDER BY ts, seq),
                       list(DISTINCT session_id)
                FROM events WHERE dataset = ? AND user_id IS NOT NULL
                  AND item_id IS NOT NULL
                GROUP BY user_id""", [dataset]).fetchall()
        finally:
            con.close()
        log.info("customer history: %d customers", len(rows))
        return cls({u: items[-per_user:] for u, items, _ in rows},
                   {u: sessions for u, _, sessions in rows})

    def items(self, user_id: str | None) -> list[str]:
        return self.by_user.get(user_id, []) if user_id else []

    def forget(self, user_id: str) -> tuple[int, list[str]]:
        items = self.by_user.pop(user_id, [])
        return len(items), self.sessions.pop(user_id, [])


def forget_in_duckdb(duckdb_path: str, user_id: str,
                     session_ids: list[str]) -> dict[str, int]:
    """Delete a customer's rows, and the rows of their sessions."""
    if not Path(duckdb_path).is_file():
        return {}
    con = duckdb.connect(duckdb_path)
    try:
        counts = {}
        con.execute("BEGIN TRANSACTION")
        for table in ("events", "identities"):
            counts[f"duckdb_{table}"] = con.execute(
                f"DELETE FROM {table} WHERE user_id = ? "
                f"OR list_contains(?, session_id)",
                [user_id, session_ids]).fetchone()[0]
        counts["duckdb_customers"] = con.execute(
            "DELETE FROM customers WHERE user_id = ?",
            [user_id]).fetchone()[0]
        con.execute("COMMIT")
        return counts
    finally:
        con.close()


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def remember_forgotten(path: str, session_ids: list[str]) -> None:
    """Append the hashes durably; the ids themselves are not kept."""
    if not session_ids:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.writelines(session_hash(s) + "\n" for s in session_ids)
        f.flush()
        os.fsync(f.fileno())


def forgotten_hashes(path: str) -> set[str]:
    p = Path(path)
    return set(p.read_text().split()) if p.is_file() else set()
