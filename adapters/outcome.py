"""OperationOutcome reading: the server's own words travel with every error we raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_BLOCKING = frozenset({"fatal", "error"})


@dataclass(frozen=True, slots=True)
class OutcomeIssue:
    """One ``OperationOutcome.issue``: severity, issue type code, diagnostics and where."""

    severity: str
    code: str
    diagnostics: str
    location: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return self.severity in _BLOCKING


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The answer of ``$validate``: valid when no issue is ``error`` or ``fatal``."""

    issues: tuple[OutcomeIssue, ...]
    outcome: dict[str, Any]

    @property
    def valid(self) -> bool:
        return not any(issue.blocking for issue in self.issues)

    @property
    def errors(self) -> list[OutcomeIssue]:
        return [issue for issue in self.issues if issue.blocking]


def parse_outcome(resource: dict[str, Any] | None) -> list[OutcomeIssue]:
    """Issues of an OperationOutcome; anything else gives an empty list."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
        return []
    issues: list[OutcomeIssue] = []
    for raw in resource.get("issue") or []:
        if not isinstance(raw, dict):
            continue
        details = raw.get("details") or {}
        text = raw.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None) or ""
        where = tuple(str(x) for x in (raw.get("expression") or raw.get("location") or []))
        issues.append(
            OutcomeIssue(
                severity=str(raw.get("severity", "error")),
                code=str(raw.get("code", "unknown")),
                diagnostics=str(text),
                location=where,
            )
        )
    return issues


def diagnostics_of(issues: list[OutcomeIssue], limit: int = 5) -> str:
    """A one-line summary of the most severe issues first, for error messages."""
    order = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
    ranked = sorted(issues, key=lambda i: order.get(i.severity, 4))
    parts = []
    for issue in ranked[:limit]:
        where = f" at {issue.location[0]}" if issue.location else ""
        parts.append(f"[{issue.severity}/{issue.code}{where}] {issue.diagnostics}".strip())
    more = f" (+{len(ranked) - limit} more)" if len(ranked) > limit else ""
    return "; ".join(parts) + more
