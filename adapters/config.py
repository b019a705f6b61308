"""Plain configuration for the FHIR client; the composition root builds it from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from adapters.errors import FhirConfigError


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
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise FhirConfigError(
                "OV-1001",
                f"FHIR base URL {self.base_url!r} is not an http(s) URL; set it like http://host:8080/fhir",
            )
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
            if value <= 0:
                raise FhirConfigError("OV-1002", f"FHIR client setting {name}={value} must be positive")
        if self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            raise FhirConfigError(
                "OV-1002", "FHIR retry settings (max_retries, backoff_*, max_retry_after_s) must be >= 0"
            )

    @property
    def base(self) -> str:
        """The base URL without a trailing slash."""
        return self.base_url.rstrip("/")

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}".lower()
