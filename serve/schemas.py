"""Request and response bodies; pydantic checks every request field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictInt,
                      StringConstraints, field_validator, model_validator)

from rolecall.events import EVENT_TYPES
from rolecall.roles import AGE_GROUPS, FILTER_GENDERS, GENDERS

ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
Id = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
# Event times: after 1970 and before 2100, finite (they become DuckDB
# timestamps at ingest).
MAX_TS = 4_102_444_800.0
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhereIn(Strict):
    """The request's own filters: hard, like stock; an item that fails
    one is never recommended (an unknown price fails a price bound)."""

    price_min: float | None = Field(default=None, ge=0,
                                    allow_inf_nan=False)
    price_max: float | None = Field(default=None, ge=0,
                                    allow_inf_nan=False)
    product_type: str | None = Field(default=None, min_length=1,
                                     max_length=128)
    department: str | None = Field(default=None, min_length=1,
                                   max_length=128)
    campaign: str | None = Field(default=None, min_length=1,
                                 max_length=64)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> WhereIn:
        # Crossed bounds can match nothing: a client mistake, not an
        # empty answer.
        low, high = self.price_min, self.price_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"price_min at most price_max; found "
                             f"{low} > {high}")
        return self


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
    where: WhereIn | None = None

    @field_validator("filters")
    @classmethod
    def _known_filter_values(cls, filters: dict[str, str] | None):
        """The role filters must name a role: an unknown word would be
        accepted and silently do nothing. Other filters are the shop's
        own (colour, fit), kept short."""
        for key, value in (filters or {}).items():
            word = value.lower()
            if key == "gender" and word not in FILTER_GENDERS:
                raise ValueError(f"filters.gender: one of "
                                 f"{', '.join(FILTER_GENDERS)}; found "
                                 f"{value[:64]!r}")
            if key == "age_group" and word not in AGE_GROUPS:
                raise ValueError(f"filters.age_group: one of "
                                 f"{', '.join(AGE_GROUPS)}; found "
                                 f"{value[:64]!r}")
            if not 1 <= len(key) <= 32 or not 1 <= len(value) <= 16:
                raise ValueError(f"filters: names of 1 to 32 and values "
                                 f"of 1 to 16 characters; found "
                                 f"{key[:40]!r}: {value[:40]!r}")
        return filters


class Parts(BaseModel):
    """Each part of the score; model + lookalikes + history + business
    is the score, exactly (the floats are not rounded)."""

    model: float
    lookalikes: float
    history: float = 0.0
    business: float = 0.0


class Evidence(BaseModel):
    """What one non-zero part of the score rests on."""

    part: Literal["model", "lookalikes", "history", "business"]
    share: float  # of the item's score
    about: str
    item_id: str | None = None  # model: the closest recent click
    sessions: list[str] = []  # lookalikes: voting sessions (first 3)
    voters: int | None = None  # lookalikes: how many voted
    # business: each signal's part (margin, new_arrival, campaign,
    # stock); they add up to the business part.
    signals: dict[str, float] | None = None


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
    evidence: list[Evidence] = []
    backfill: bool = False  # filled in from the prior order


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


# The live catalogue, PUT /v1/items (serve/live_catalog.py).
MAX_ITEMS = 500  # per request; the 64 KiB body limit binds first
Text = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Size = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Units = Annotated[StrictInt, Field(ge=0, le=10_000_000)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                       pattern=ID_PATTERN)]


class ItemIn(BaseModel):
    """One item's new or changed fields; those left out keep their
    values (a new item's are unknown)."""

    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    name: Text | None = None
    product_type: Text | None = None
    product_group: Text | None = None
    appearance: Text | None = None
    colour: Text | None = None
    colour_value: Text | None = None
    colour_master: Text | None = None
    department: Text | None = None
    index_name: Text | None = None
    index_group: Text | None = None
    section: Text | None = None
    garment_group: Text | None = None
    gender: Literal[GENDERS] | None = None  # type: ignore[valid-type]
    age_group: Literal[AGE_GROUPS] | None = None  # type: ignore[valid-type]
    size_band: Text | None = None
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    margin: float | None = Field(default=None, ge=0, le=1,
                                 description="share of the price")
    stock: dict[Size, Units] | None = Field(
        default=None, max_length=64,
        description="units per size; an item without sizes uses the "
                    "key 'one size'")
    arrival: date | None = None
    campaigns: list[Tag] | None = Field(default=None, max_length=16)


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)


class ItemChangeOut(BaseModel):
    item_id: str
    created: bool  # new to the catalogue, embedded from attributes
    in_stock: bool
    # Attributes whose values the model never saw: unknown in the new
    # item's embedding (a new item only).
    unknown_attributes: list[str] = []


class ItemsChangedOut(BaseModel):
    items: list[ItemChangeOut]
    catalog_items: int
    logged: bool  # written to the catalogue log, so a restart keeps it
