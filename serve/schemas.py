"""Request and response bodies; pydantic checks every request field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from rolecall.events import EVENT_TYPES

ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
Id = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
# Event times: after 1970 and before 2100, finite (they become DuckDB
# timestamps at ingest).
MAX_TS = 4_102_444_800.0
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    """One thing a visitor did; item events must name an item."""

    session_id: str = Id
    event_type: EventType = "click"
    item_id: str | None = Field(default=None, min_length=1,
                                max_length=64)
    user_id: str | None = Field(default=None, min_length=1,
                                max_length=128, pattern=ID_PATTERN)
    device_id: str | None = Field(default=None, min_length=1,
                                  max_length=128)
    filters: dict[str, str] | None = Field(default=None, max_length=16)
    ts: float | None = Field(default=None, ge=0, le=MAX_TS,
                             allow_inf_nan=False)
    event_id: str | None = Field(default=None, min_length=1,
                                 max_length=128)
    k: StrictInt | None = Field(default=None, ge=1)


class Parts(BaseModel):
    """Each part of the score; they add up to it."""

    model: float
    lookalikes: float
    history: float = 0.0


class Recommendation(BaseModel):
    item_id: str
    name: str | None
    score: float
    parts: Parts
    reason: str
    gender: str | None
    age_group: str | None
    department: str | None = None
    lookalike_sessions: list[str] = []


class RoleOut(BaseModel):
    gender: str | None
    age_group: str | None
    size: str | None
    key: str


class RoleContextOut(BaseModel):
    key: str
    gender: str | None
    age_group: str | None
    size: str | None


class RecommendationsOut(BaseModel):
    session_id: str
    user_id: str | None
    role: RoleOut | None
    roles_seen: list[RoleContextOut]
    events: int
    recommendations: list[Recommendation]
    bundle: str
    timing_ms: dict[str, float]


class EventOut(RecommendationsOut):
    event_id: str
    accepted: bool = True
    switched: bool  # the active role changed at this event
    previous_role: str | None = None


class ErrorOut(BaseModel):
    error: str
    expected: str
    found: str | None = None
    details: list[dict] = []
