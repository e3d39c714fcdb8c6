"""The history schema as SQLAlchemy 2.0 typed mappings: ``contacts``, ``transitions``, ``alerts``.

The migrations in ``migrations/versions`` create exactly these tables; a test compares the two.
Times are stored as UTC timestamps (``timestamptz`` on PostgreSQL; ISO text on SQLite, read back
as aware UTC datetimes by :class:`UtcDateTime`). There are no foreign keys on purpose: a streaming
sink may write a contact's transitions before its contact row, and a replay writes contacts last.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID = 200  # longest id: "anon:" + a 128-character anonymous id, with room to spare
NAME = 64


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored in UTC; naive values are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: storage needs an aware (UTC) time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDocument = JSON().with_variant(JSONB(), "postgresql")
SerialId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: an alias of the rowid


class Base(DeclarativeBase):
    """Declarative base of the history tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JsonDocument}


class ContactRow(Base):
    """A contact's latest known standing (newest snapshot wins, by time)."""

    __tablename__ = "contacts"

    contact_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    stage: Mapped[str] = mapped_column(String(NAME))
    temperature: Mapped[str] = mapped_column(String(NAME))
    score: Mapped[float] = mapped_column(Float)
    stage_entered_at: Mapped[datetime]
    last_event_at: Mapped[datetime | None]
    core_orders: Mapped[int] = mapped_column(Integer)
    referrals_converted: Mapped[int] = mapped_column(Integer)
    events_applied: Mapped[int] = mapped_column(Integer)
    first_touch_source: Mapped[str | None] = mapped_column(String(NAME))
    utm_source: Mapped[str | None] = mapped_column(String(ID))
    utm_medium: Mapped[str | None] = mapped_column(String(ID))
    utm_campaign: Mapped[str | None] = mapped_column(String(ID))
    referred_by: Mapped[str | None] = mapped_column(String(ID))
    model: Mapped[str] = mapped_column(String(NAME))
    updated_at: Mapped[datetime]  # wall clock of the write that stored this version
    # An anonymous contact whose history was merged into this contact (identity merge); else null.
    merged_into: Mapped[str | None] = mapped_column(String(ID))
    # Value segments (revision 0005): null for a model without [segments] or an older snapshot.
    segment: Mapped[str | None] = mapped_column(String(NAME))
    revenue: Mapped[float | None] = mapped_column(Float)
    orders: Mapped[int | None] = mapped_column(Integer)
    promo_orders: Mapped[int | None] = mapped_column(Integer)
    foreign_orders: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_contacts_stage", "stage"),
        Index("ix_contacts_segment", "segment"),
        Index("ix_contacts_first_touch_source", "first_touch_source"),
        # The anonymous contacts merged into a contact (its timeline; the funnel's person mapping).
        Index("ix_contacts_merged_into", "merged_into"),
    )


class TransitionRow(Base):
    """One stage, temperature or identity move; ``seq`` keeps write order for moves at the same instant."""

    __tablename__ = "transitions"

    seq: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    transition_id: Mapped[str] = mapped_column(String(ID), unique=True)
    contact_id: Mapped[str] = mapped_column(String(ID))
    kind: Mapped[str] = mapped_column(String(16))
    # Stage or band names; for kind "identity", the anonymous contact id and the contact's id.
    from_stage: Mapped[str] = mapped_column("from", String(ID))
    to_stage: Mapped[str] = mapped_column("to", String(ID))
    direction: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(ID))
    skipped: Mapped[list[str]] = mapped_column(JsonDocument)
    trigger_event_id: Mapped[str | None] = mapped_column(String(ID))
    occurred_at: Mapped[datetime]
    stage: Mapped[str] = mapped_column(String(NAME))
    temperature: Mapped[str] = mapped_column(String(NAME))
    score: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(NAME))

    __table_args__ = (
        # The contact timeline, and the per-contact ordering behind "time in stage".
        Index("ix_transitions_contact_time", "contact_id", "occurred_at", "seq"),
        # --since / --until windows.
        Index("ix_transitions_occurred_at", "occurred_at"),
    )


class AlertRow(Base):
    """An alert with the contact's first touch. A ``became_hot`` row also holds when sales
    acknowledged it, when the first ``lead_contacted`` answered it (``answered_at``,
    ``response_seconds``) and when it escalated (``overdue_at``), filled in from the
    ``alert_answered`` / ``response_overdue`` rows that name it in ``original_alert_id``."""

    __tablename__ = "alerts"

    alert_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    type: Mapped[str] = mapped_column(String(NAME))
    contact_id: Mapped[str] = mapped_column(String(ID))
    stage: Mapped[str] = mapped_column(String(NAME))
    score: Mapped[float] = mapped_column(Float)
    occurred_at: Mapped[datetime]
    respond_by: Mapped[datetime]
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    first_touch_source: Mapped[str | None] = mapped_column(String(NAME))
    utm_source: Mapped[str | None] = mapped_column(String(ID))
    utm_medium: Mapped[str | None] = mapped_column(String(ID))
    utm_campaign: Mapped[str | None] = mapped_column(String(ID))
    model: Mapped[str] = mapped_column(String(NAME))
    acknowledged_at: Mapped[datetime | None]
    # Speed to lead (revision 0004).
    original_alert_id: Mapped[str | None] = mapped_column(String(ID))
    answered_at: Mapped[datetime | None]
    response_seconds: Mapped[float | None] = mapped_column(Float)
    overdue_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)

    __table_args__ = (
        Index("ix_alerts_contact_time", "contact_id", "occurred_at"),
        Index("ix_alerts_original_alert_id", "original_alert_id"),
        Index("ix_alerts_occurred_at", "occurred_at"),
        # Open alerts, oldest first (a sales queue); partial on both dialects.
        Index(
            "ix_alerts_open",
            "respond_by",
            postgresql_where=text("acknowledged_at IS NULL"),
            sqlite_where=text("acknowledged_at IS NULL"),
        ),
    )


# The Core tables, for the batched statements and the report queries.
contacts = cast(Table, ContactRow.__table__)
transitions = cast(Table, TransitionRow.__table__)
alerts = cast(Table, AlertRow.__table__)
