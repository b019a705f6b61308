"""The state database: watermarks, findings, run records, feedback, JWT replay store and the sync lease.

SQLAlchemy 2.x; SQLite by default, PostgreSQL by URL. The schema is created on first use. Every write is
its own short transaction so that a crash between two steps leaves a consistent store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class WatermarkRow(Base):
    __tablename__ = "ov_watermark"
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FindingRow(Base):
    """One extracted finding, keyed by its deterministic key (the FHIR identifier value)."""

    __tablename__ = "ov_finding"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    patient_id: Mapped[str] = mapped_column(String(128), index=True)
    note_id: Mapped[str] = mapped_column(String(128), index=True)
    drug_rxnorm: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(128))
    written: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessedInputRow(Base):
    """(task, version, input hash) already processed: a rerun skips it."""

    __tablename__ = "ov_processed"
    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    input_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    input_hash: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunRow(Base):
    __tablename__ = "ov_run"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)


class FeedbackRow(Base):
    __tablename__ = "ov_feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(String(128), index=True)
    card_uuid: Mapped[str] = mapped_column(String(64), index=True)
    card_topic: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    override_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override_display: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome_ts: Mapped[str | None] = mapped_column(String(40), nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CardLogRow(Base):
    """Which card uuid carried which topic, so feedback can be counted per card type."""

    __tablename__ = "ov_card"
    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JtiRow(Base):
    __tablename__ = "ov_jti"
    issuer: Mapped[str] = mapped_column(String(256), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class LeaseRow(Base):
    __tablename__ = "ov_lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    counts: dict[str, Any]
    errors: list[Any]


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class StateStore:
    """All state access goes through here; one instance per process, injected where needed."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # watermarks -------------------------------------------------------------------------------
    def get_watermark(self, resource_type: str) -> str | None:
        with self.session() as s:
            row = s.get(WatermarkRow, resource_type)
            return row.value if row else None

    def set_watermark(self, resource_type: str, value: str) -> None:
        with self.session() as s:
            row = s.get(WatermarkRow, resource_type)
            if row is None:
                s.add(WatermarkRow(resource_type=resource_type, value=value, updated_at=utcnow()))
            elif value > row.value:
                row.value = value
                row.updated_at = utcnow()

    def reset_watermarks(self) -> None:
        with self.session() as s:
            s.execute(delete(WatermarkRow))

    # processed inputs ---------------------------------------------------------------------------
    def processed_hash(self, task: str, version: str, input_key: str) -> str | None:
        with self.session() as s:
            row = s.get(ProcessedInputRow, (task, version, input_key))
            return row.input_hash if row else None

    def mark_processed(self, task: str, version: str, items: Sequence[tuple[str, str]]) -> None:
        with self.session() as s:
            for key, digest in items:
                row = s.get(ProcessedInputRow, (task, version, key))
                if row is None:
                    s.add(ProcessedInputRow(task=task, version=version, input_key=key, input_hash=digest))
                else:
                    row.input_hash = digest
                    row.processed_at = utcnow()

    # findings -----------------------------------------------------------------------------------
    def upsert_findings(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert or replace findings by key; returns how many were new."""
        new = 0
        with self.session() as s:
            for data in rows:
                row = s.get(FindingRow, data["key"])
                if row is None:
                    s.add(FindingRow(**data))
                    new += 1
                else:
                    for k, v in data.items():
                        setattr(row, k, v)
        return new

    def replace_note_findings(self, note_id: str, kind: str, rows: Sequence[dict[str, Any]]) -> None:
        """A re-extracted note replaces its earlier findings of that kind (a changed note may lose some)."""
        with self.session() as s:
            s.execute(delete(FindingRow).where(FindingRow.note_id == note_id, FindingRow.kind == kind))
            for data in rows:
                s.merge(FindingRow(**data))

    def mark_written(self, keys: Sequence[str]) -> None:
        with self.session() as s:
            for key in keys:
                row = s.get(FindingRow, key)
                if row is not None:
                    row.written = 1

    def findings(
        self, *, kind: str | None = None, patient_id: str | None = None, drug_rxnorm: str | None = None,
        unwritten_only: bool = False,
    ) -> list[FindingRow]:
        with self.session() as s:
            q = select(FindingRow)
            if kind:
                q = q.where(FindingRow.kind == kind)
            if patient_id:
                q = q.where(FindingRow.patient_id == patient_id)
            if drug_rxnorm:
                q = q.where(FindingRow.drug_rxnorm == drug_rxnorm)
            if unwritten_only:
                q = q.where(FindingRow.written == 0)
            return list(s.scalars(q.order_by(FindingRow.key)))

    def finding_drugs_since(self, kind: str, since: datetime | None) -> set[str]:
        """RxNorm codes of the drugs with findings of ``kind`` stored at or after ``since`` (all when None)."""
        with self.session() as s:
            q = select(FindingRow.drug_rxnorm).where(FindingRow.kind == kind, FindingRow.drug_rxnorm.is_not(None))
            if since is not None:
                q = q.where(FindingRow.created_at >= since)
            return {rx for rx in s.scalars(q.distinct()) if rx}

    # runs ---------------------------------------------------------------------------------------
    def start_run(self, kind: str) -> int:
        with self.session() as s:
            row = RunRow(kind=kind, started_at=utcnow(), status="running", counts={}, errors=[])
            s.add(row)
            s.flush()
            return int(row.id)

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any], errors: list[Any]) -> None:
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is not None:
                row.status = status
                row.ended_at = utcnow()
                row.counts = json.loads(json.dumps(counts, default=str))
                row.errors = json.loads(json.dumps(errors[:200], default=str))

    def close_interrupted_runs(self, kind: str) -> int:
        """Mark runs left "running" by a dead process as "interrupted" (call only while holding the lease)."""
        with self.session() as s:
            rows = list(s.scalars(select(RunRow).where(RunRow.kind == kind, RunRow.status == "running")))
            for row in rows:
                row.status = "interrupted"
                row.ended_at = utcnow()
            return len(rows)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        with self.session() as s:
            rows = s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit))
            return [
                RunRecord(r.id, r.kind, _aware(r.started_at), _aware(r.ended_at) if r.ended_at else None,
                          r.status, dict(r.counts or {}), list(r.errors or []))
                for r in rows
            ]

    # feedback and cards -------------------------------------------------------------------------
    def log_cards(self, service_id: str, patient_id: str, cards: Sequence[tuple[str, str]]) -> None:
        with self.session() as s:
            for uuid, topic in cards:
                s.merge(CardLogRow(uuid=uuid, service_id=service_id, topic=topic, patient_id=patient_id))

    def add_feedback(self, rows: Sequence[dict[str, Any]]) -> None:
        with self.session() as s:
            for data in rows:
                card = s.get(CardLogRow, data["card_uuid"])
                s.add(FeedbackRow(card_topic=card.topic if card else None, **data))

    def feedback_counts(self) -> dict[str, dict[str, int]]:
        """{"<service>/<topic>": {"accepted": n, "overridden": m}}."""
        counts: dict[str, dict[str, int]] = {}
        with self.session() as s:
            for row in s.scalars(select(FeedbackRow)):
                key = f"{row.service_id}/{row.card_topic or 'unknown'}"
                counts.setdefault(key, {}).setdefault(row.outcome, 0)
                counts[key][row.outcome] += 1
        return counts

    # JWT replay store ---------------------------------------------------------------------------
    def remember_jti(self, issuer: str, jti: str, ttl_s: float) -> bool:
        """True if the jti is new (and is now remembered); False if it was seen before."""
        now = utcnow()
        try:
            with self.session() as s:
                s.execute(delete(JtiRow).where(JtiRow.expires_at < now))
                existing = s.get(JtiRow, (issuer, jti))
                if existing is not None and _aware(existing.expires_at) >= now:
                    return False
                if existing is not None:
                    s.delete(existing)
                    s.flush()
                s.add(JtiRow(issuer=issuer, jti=jti, expires_at=now + timedelta(seconds=ttl_s)))
            return True
        except IntegrityError:
            # another replica stored the same jti between our read and our write
            return False

    # lease ------------------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        now = utcnow()
        try:
            with self.session() as s:
                row = s.get(LeaseRow, name, with_for_update=True)
                if row is None:
                    s.add(LeaseRow(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl_s)))
                    return True
                if row.holder == holder or _aware(row.expires_at) < now:
                    row.holder = holder
                    row.expires_at = now + timedelta(seconds=ttl_s)
                    return True
                return False
        except IntegrityError:
            return False

    def lease_holder(self, name: str) -> str | None:
        with self.session() as s:
            row = s.get(LeaseRow, name)
            return row.holder if row else None

    def take_over_lease(self, name: str, dead_holder: str, holder: str, ttl_s: float) -> bool:
        """Take a lease from a holder known to be dead; False when someone else got it first."""
        with self.session() as s:
            row = s.get(LeaseRow, name, with_for_update=True)
            if row is None or row.holder != dead_holder:
                return False
            row.holder = holder
            row.expires_at = utcnow() + timedelta(seconds=ttl_s)
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as s:
            row = s.get(LeaseRow, name)
            if row is not None and row.holder == holder:
                s.delete(row)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CDS service read while the sync writes; the busy timeout covers short write overlaps
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
