"""Plain configuration of the hooks part; ``cds`` builds it from its Settings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hooks.errors import HooksConfigError

Environment = Literal["development", "test", "production"]
_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


@dataclass(frozen=True)
class HooksConfig:
    """How the CDS Hooks endpoints behave.

    ``public_base_url`` is the spec's ``{base}``: the URL under which ``/cds-services`` is reachable from the
    EHR (behind a proxy it differs from what the server sees). JWT ``aud`` is checked against it; when unset,
    against the URL of the request, taking ``X-Forwarded-Proto``/``X-Forwarded-Host`` into account only when
    ``trust_forwarded_headers`` is on. ``require_jwt=False`` is accepted only in development.
    ``decision_timeout_s`` is the deadline handed to the decision service; past it plus
    ``timeout_grace_s`` the call is cancelled and answered 503.
    """

    environment: Environment = "production"
    require_jwt: bool = True
    public_base_url: str | None = None
    trust_forwarded_headers: bool = False
    max_body_bytes: int = 1_048_576
    cors_allow_origins: Sequence[str] = ()
    decision_timeout_s: float = 5.0
    timeout_grace_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.require_jwt and self.environment != "development":
            raise HooksConfigError(
                f"JWT checks can only be disabled in development, not in {self.environment}; "
                "configure trusted issuers instead",
                code="OV-3002",
            )
        if "*" in self.cors_allow_origins and self.environment == "production":
            raise HooksConfigError(
                "CORS origin '*' is refused in production; list the EHR origins that may call the service",
                code="OV-3003",
            )
        if self.public_base_url is not None and not _BASE_URL.match(self.public_base_url):
            raise HooksConfigError(
                f"public_base_url {self.public_base_url!r} must be an absolute http(s) URL without query",
                code="OV-3004",
            )
        if self.max_body_bytes < 1024:
            raise HooksConfigError("max_body_bytes must be at least 1024", code="OV-3005")
        if self.decision_timeout_s <= 0 or self.timeout_grace_s < 0:
            raise HooksConfigError(
                "decision_timeout_s must be positive and timeout_grace_s not negative", code="OV-3006"
            )
