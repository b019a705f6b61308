"""When to retry a FHIR request and how long to wait: pure functions, no I/O.

Retry only what is safe: an error before the request reached the server (connect phase) is always safe;
after that, only idempotent requests (reads, PUTs, transactions made only of conditional or
update-as-create entries) are retried, on 429, 502, 503, 504 and dropped connections. 429 is also safe for
other writes because the server refused them before doing anything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

# Raised before any byte of the request reached the server: retrying cannot duplicate a write.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (delay uniform in [0, min(cap, base * 2**attempt)])."""

    base_s: float
    max_s: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_s, self.base_s * (2**attempt))
        return rng.uniform(0.0, ceiling)


def error_was_before_sending(exc: httpx.TransportError) -> bool:
    """True when the request certainly never reached the server."""
    return isinstance(exc, _NOT_SENT)


def may_retry_error(exc: httpx.TransportError, *, idempotent: bool) -> bool:
    return error_was_before_sending(exc) or idempotent


def may_retry_status(status: int, *, idempotent: bool) -> bool:
    if status == 429:
        return True
    return idempotent and status in RETRYABLE_STATUSES


def retry_after_s(header: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds asked by ``Retry-After`` (delta-seconds or HTTP-date); None when absent or unreadable."""
    if header is None:
        return None
    value = header.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
