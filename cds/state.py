"""The state database: watermarks, findings, run records, feedback, JWT replay store and the sync lease.

SQLAlchemy 2.x; SQLite by default, PostgreSQL by URL (``postgresql://`` means psycopg 3). The schema is
migrated to the newest Alembic revision on first use (``cds/db_migrate.py``). Every write is its own short
transaction so that a crash between two steps leaves a consistent store; the JWT replay store and the leases,
which replicas contend for, are single ``INSERT ... ON CONFLICT`` statements, atomic on both databases.
"""

from __future__ import annotations

import json
import logging
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
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from cds.errors import SyncConfigError

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class WatermarkRow(Base):
    __tablename__ = "ov_watermark"
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# FindingRow.written: not yet on the server; on the server; or on the server but lost by its re-read note, so
# its resource waits to be withdrawn there and readers of findings no longer see it
NOT_WRITTEN, WRITTEN, WITHDRAWAL_PENDING = 0, 1, 2


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
        from cds.db_migrate import make_state_folder, upgrade

        self.url = normalise_url(url)
        if self.url.startswith("sqlite:///"):
            make_state_folder(Path(self.url.removeprefix("sqlite:///")).parent)
        self.engine: Engine = create_engine(self.url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        upgrade(self.engine)
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

    def replace_note_findings(
        self, note_id: str, kind: str, rows: Sequence[dict[str, Any]], *, withdraw_lost: bool = False
    ) -> None:
        """A re-extracted note replaces its earlier findings of that kind (a changed note may lose some).

        With ``withdraw_lost``, a lost finding that is on the server stays as WITHDRAWAL_PENDING until its
        resource is withdrawn there (``forget_findings``), in the same transaction, so a crash loses nothing.
        """
        keep = {str(data["key"]) for data in rows}
        with self.session() as s:
            earlier = s.scalars(select(FindingRow).where(FindingRow.note_id == note_id, FindingRow.kind == kind))
            for row in list(earlier):
                if withdraw_lost and row.key not in keep and row.written in (WRITTEN, WITHDRAWAL_PENDING):
                    row.written = WITHDRAWAL_PENDING
                else:
                    s.delete(row)
            s.flush()
            for data in rows:
                s.merge(FindingRow(**data))

    def mark_written(self, keys: Sequence[str]) -> None:
        with self.session() as s:
            for key in keys:
                row = s.get(FindingRow, key)
                if row is not None:
                    row.written = WRITTEN

    def pending_withdrawals(self, kinds: Sequence[str]) -> list[FindingRow]:
        """Findings of these kinds that re-read notes lost while their resources are still on the server."""
        with self.session() as s:
            q = select(FindingRow).where(FindingRow.kind.in_(kinds), FindingRow.written == WITHDRAWAL_PENDING)
            return list(s.scalars(q.order_by(FindingRow.key)))

    def forget_findings(self, keys: Sequence[str]) -> None:
        """Drop withdrawn findings for good (their resources were withdrawn on the server)."""
        if keys:
            with self.session() as s:
                s.execute(
                    delete(FindingRow).where(FindingRow.key.in_(keys), FindingRow.written == WITHDRAWAL_PENDING)
                )

    def findings(
        self, *, kind: str | None = None, patient_id: str | None = None, drug_rxnorm: str | None = None,
        unwritten_only: bool = False, note_id: str | None = None,
    ) -> list[FindingRow]:
        with self.session() as s:
            q = select(FindingRow).where(FindingRow.written != WITHDRAWAL_PENDING)
            if kind:
                q = q.where(FindingRow.kind == kind)
            if patient_id:
                q = q.where(FindingRow.patient_id == patient_id)
            if drug_rxnorm:
                q = q.where(FindingRow.drug_rxnorm == drug_rxnorm)
            if note_id:
                q = q.where(FindingRow.note_id == note_id)
            if unwritten_only:
                q = q.where(FindingRow.written == NOT_WRITTEN)
            return list(s.scalars(q.order_by(FindingRow.key)))

    def finding_patients_since(self, kind: str, since: datetime | None) -> set[str]:
        """Patients with findings of ``kind`` stored at or after ``since`` (all when None)."""
        return self._distinct_since(FindingRow.patient_id, kind, since)

    def finding_drugs_since(self, kind: str, since: datetime | None) -> set[str]:
        """RxNorm codes of the drugs with findings of ``kind`` stored at or after ``since`` (all when None)."""
        return self._distinct_since(FindingRow.drug_rxnorm, kind, since)

    def _distinct_since(self, column: Any, kind: str, since: datetime | None) -> set[str]:
        with self.session() as s:
            q = select(column).where(
                FindingRow.kind == kind, column.is_not(None), FindingRow.written != WITHDRAWAL_PENDING
            )
            if since is not None:
                q = q.where(FindingRow.created_at >= since)
            return {str(v) for v in s.scalars(q.distinct()) if v}

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
        """True if the jti is new (and is now remembered); False if it was seen before.

        One statement: of two replicas inserting the same jti at once, exactly one gets a row back.
        """
        now = utcnow()
        self._purge(delete(JtiRow).where(JtiRow.expires_at < now))
        insert = self._insert(JtiRow).values(issuer=issuer, jti=jti, expires_at=now + timedelta(seconds=ttl_s))
        stmt = insert.on_conflict_do_update(
            index_elements=[JtiRow.issuer, JtiRow.jti],
            set_={"expires_at": insert.excluded.expires_at},
            where=JtiRow.expires_at < now,  # an expired entry of the same jti may be reused
        ).returning(JtiRow.jti)
        with self.session() as s:
            return s.execute(stmt).first() is not None

    # lease ------------------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take (or renew) the lease ``name`` unless another holder has it unexpired; atomic across replicas."""
        now = utcnow()
        insert = self._insert(LeaseRow).values(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl_s))
        stmt = insert.on_conflict_do_update(
            index_elements=[LeaseRow.name],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=or_(LeaseRow.holder == insert.excluded.holder, LeaseRow.expires_at < now),
        ).returning(LeaseRow.name)
        with self.session() as s:
            return s.execute(stmt).first() is not None

    def claim_once(self, name: str, holder: str, ttl_s: float) -> bool:
        """True for the first caller only (the holder too is refused a second time) until ``ttl_s`` passes.

        A lease row that is never released: how replicas agree on who runs one scheduled fire time.
        """
        now = utcnow()
        insert = self._insert(LeaseRow).values(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl_s))
        stmt = insert.on_conflict_do_update(
            index_elements=[LeaseRow.name],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=LeaseRow.expires_at < now,
        ).returning(LeaseRow.name)
        with self.session() as s:
            return s.execute(stmt).first() is not None

    def purge_expired_leases(self) -> int:
        """Drops leases past their expiry (an expired lease is free anyway); returns how many."""
        return self._purge(delete(LeaseRow).where(LeaseRow.expires_at < utcnow()))

    def lease_holder(self, name: str) -> str | None:
        with self.session() as s:
            row = s.get(LeaseRow, name)
            return row.holder if row else None

    def take_over_lease(self, name: str, dead_holder: str, holder: str, ttl_s: float) -> bool:
        """Take a lease from a holder known to be dead; False when someone else got it first."""
        stmt = (
            update(LeaseRow)
            .where(LeaseRow.name == name, LeaseRow.holder == dead_holder)
            .values(holder=holder, expires_at=utcnow() + timedelta(seconds=ttl_s))
            .returning(LeaseRow.name)
        )
        with self.session() as s:
            return s.execute(stmt).first() is not None

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    # helpers ------------------------------------------------------------------------------------------
    def _insert(self, model: type[Base]) -> Any:
        """The dialect's INSERT with ``on_conflict_do_*`` (both SQLite and PostgreSQL spell it alike)."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def _purge(self, stmt: Any) -> int:
        """A housekeeping DELETE in its own transaction; losing a race (lock timeout, deadlock) is harmless."""
        try:
            with self.session() as s:
                return int(getattr(s.execute(stmt), "rowcount", 0) or 0)
        except DBAPIError as exc:
            log.debug("housekeeping delete skipped", extra={"error": type(exc.orig).__name__})
            return 0


def normalise_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` mean psycopg 3 (the driver we ship); only SQLite and PostgreSQL work."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SyncConfigError(
            "OV-0076", f"state_db_url is not a database URL ({exc}); fix ONCOVIGIL_STATE_DB_URL"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=f"postgresql+{driver or 'psycopg'}")
    elif backend != "sqlite":
        raise SyncConfigError(
            "OV-0076",
            f"state_db_url uses {backend!r}; OncoVigil supports sqlite:///PATH and postgresql://USER@HOST/DB",
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CDS service read while the sync writes; the busy timeout covers short write overlaps
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
