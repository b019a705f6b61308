"""Plain configuration for the FHIR client; the composition root builds it from Settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from adapters.errors import FhirConfigError

MAX_RETRIES = 20


@dataclass(frozen=True, slots=True)
class FhirClientConfig:
    """Everything the client needs to talk to one FHIR server; units are in the names.

    ``trusted_attachment_origins`` lists other origins (``https://docs.example.org``) whose
    ``attachment.url`` may be fetched with our credentials; the FHIR server's own origin always is.
    """

    base_url: str
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    pool_timeout_s: float = 10.0
    max_connections: int = 10
    page_size: int = 50
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    write_batch_size: int = 100
    user_agent: str = "OncoVigil/0.1 (+https://oncovigil.org)"
    trusted_attachment_origins: tuple[str, ...] = field(default_factory=tuple)
    max_attachment_bytes: int = 10_000_000

    def __post_init__(self) -> None:
        self._check_base_url()
        positive = {
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "write_timeout_s": self.write_timeout_s,
            "pool_timeout_s": self.pool_timeout_s,
            "max_connections": self.max_connections,
            "page_size": self.page_size,
            "write_batch_size": self.write_batch_size,
            "max_attachment_bytes": self.max_attachment_bytes,
        }
        for name, value in positive.items():
            # NaN compares false with everything, so "<= 0" alone lets it through to httpx.
            if not math.isfinite(value) or value <= 0:
                raise FhirConfigError("OV-1002", f"FHIR client setting {name}={value} must be a positive number")
        non_negative = {
            "backoff_base_s": self.backoff_base_s,
            "backoff_max_s": self.backoff_max_s,
            "max_retry_after_s": self.max_retry_after_s,
        }
        for name, value in non_negative.items():
            if not math.isfinite(value) or value < 0:
                raise FhirConfigError("OV-1002", f"FHIR retry setting {name}={value} must be a number >= 0")
        # Each retry may wait up to backoff_max_s; beyond a few dozen a dead server looks like a hang.
        if not 0 <= self.max_retries <= MAX_RETRIES:
            raise FhirConfigError(
                "OV-1002", f"FHIR retry setting max_retries={self.max_retries} must be within 0..{MAX_RETRIES}"
            )

    def _check_base_url(self) -> None:
        hint = "set it like http://host:8080/fhir"
        try:
            parts = urlsplit(self.base_url)
            port = parts.port
        except ValueError as exc:
            # urlsplit refuses an unclosed IPv6 bracket; .port refuses a port that is not 0..65535 digits.
            raise FhirConfigError("OV-1001", f"FHIR base URL {self.base_url!r} is malformed ({exc}); {hint}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FhirConfigError("OV-1001", f"FHIR base URL {self.base_url!r} is not an http(s) URL; {hint}")
        if port == 0:
            raise FhirConfigError("OV-1001", f"FHIR base URL {self.base_url!r} has port 0; {hint}")

    @property
    def base(self) -> str:
        """The base URL without a trailing slash."""
        return self.base_url.rstrip("/")

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}".lower()
