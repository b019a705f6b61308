"""FHIR date/dateTime/instant parsing and formatting (always timezone-aware, UTC when unsaid)."""

from __future__ import annotations

from datetime import UTC, date, datetime


def parse_datetime(value: object) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware datetime; partial dates give their first instant (UTC)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_date(value: object) -> date | None:
    parsed = parse_datetime(value)
    return parsed.date() if parsed is not None else None


def format_instant(value: datetime) -> str:
    """An instant with millisecond precision in UTC (what HAPI stores in ``meta.lastUpdated``)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")


def format_datetime(value: datetime | date) -> str:
    """A FHIR dateTime (seconds kept, timezone always present) or a date."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        spec = "milliseconds" if aware.microsecond else "seconds"
        return aware.isoformat(timespec=spec)
    return value.isoformat()
