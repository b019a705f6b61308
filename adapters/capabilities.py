"""Checks the server's CapabilityStatement against what OncoVigil reads and writes; says what is missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.errors import CapabilityError


@dataclass(frozen=True, slots=True)
class ResourceNeed:
    """Interactions and search parameters we use on one resource type; ``optional`` ones only warn."""

    resource_type: str
    interactions: tuple[str, ...]
    search_params: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    optional: bool = False


DEFAULT_NEEDS: tuple[ResourceNeed, ...] = (
    ResourceNeed("Patient", ("read",)),
    ResourceNeed("DocumentReference", ("read", "search-type"), ("patient", "date", "status", "_lastUpdated")),
    ResourceNeed(
        "MedicationRequest",
        ("read", "search-type"),
        ("patient", "status", "authoredon", "_lastUpdated"),
        includes=("MedicationRequest:medication",),
    ),
    ResourceNeed("Medication", ("read",)),
    ResourceNeed("Condition", ("search-type",), ("patient", "clinical-status")),
    ResourceNeed("AllergyIntolerance", ("search-type",), ("patient", "clinical-status")),
    ResourceNeed("AdverseEvent", ("read", "update", "search-type"), ("subject",)),
    ResourceNeed("DetectedIssue", ("read", "create", "update", "search-type"), ("identifier", "patient")),
    ResourceNeed("DocumentReference", ("update", "search-type"), ("identifier",)),
    ResourceNeed("Device", ("create", "search-type"), ("identifier",)),
    ResourceNeed("Provenance", ("create", "search-type"), ("_tag",)),
    ResourceNeed("Binary", ("read",), optional=True),
)
SYSTEM_NEEDS: tuple[str, ...] = ("transaction",)


@dataclass(frozen=True, slots=True)
class CapabilityReport:
    """What the server is and what it lacks; ``missing`` blocks OncoVigil, ``warnings`` degrade it."""

    fhir_version: str
    software: str
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.missing

    def raise_if_missing(self) -> None:
        if self.missing:
            raise CapabilityError(
                "OV-1060",
                f"the FHIR server ({self.software}, FHIR {self.fhir_version}) lacks what OncoVigil needs: "
                + "; ".join(self.missing)
                + ". Use a FHIR R4 (4.0.x) server that supports these, or enable them on it",
            )


def assess(
    statement: dict[str, Any],
    needs: tuple[ResourceNeed, ...] = DEFAULT_NEEDS,
    system_needs: tuple[str, ...] = SYSTEM_NEEDS,
) -> CapabilityReport:
    """Compare a CapabilityStatement with our needs (pure: no I/O)."""
    version = str(statement.get("fhirVersion", "unknown"))
    software_raw = statement.get("software") or {}
    software = " ".join(str(software_raw.get(k, "")) for k in ("name", "version")).strip() or "unknown software"
    missing: list[str] = []
    warnings: list[str] = []
    if not version.startswith("4.0."):
        missing.append(f"FHIR version 4.0.x (server speaks {version})")
    rest = next((r for r in statement.get("rest") or [] if r.get("mode") == "server"), None)
    if rest is None:
        return CapabilityReport(version, software, (*missing, "a rest entry with mode 'server'"), ())
    system = {str(i.get("code")) for i in rest.get("interaction") or []}
    missing.extend(f"system interaction '{code}'" for code in system_needs if code not in system)
    resources = {str(r.get("type")): r for r in rest.get("resource") or []}
    for need in needs:
        target = warnings if need.optional else missing
        entry = resources.get(need.resource_type)
        if entry is None:
            target.append(f"resource type {need.resource_type}")
            continue
        interactions = {str(i.get("code")) for i in entry.get("interaction") or []}
        target.extend(
            f"{need.resource_type} interaction '{code}'" for code in need.interactions if code not in interactions
        )
        params = {str(p.get("name")) for p in entry.get("searchParam") or []}
        for name in need.search_params:
            if name in params:
                continue
            # Servers often leave the common _-parameters out of the statement while supporting them.
            (warnings if name.startswith("_") else target).append(f"{need.resource_type} search parameter '{name}'")
        includes = {str(i) for i in entry.get("searchInclude") or []}
        warnings.extend(
            f"{need.resource_type} _include '{inc}' (we fall back to reads)"
            for inc in need.includes
            if inc not in includes
        )
    return CapabilityReport(version, software, tuple(dict.fromkeys(missing)), tuple(dict.fromkeys(warnings)))


class _CapabilitySource(Protocol):
    async def capabilities(self) -> dict[str, Any]: ...


async def check_capabilities(
    client: _CapabilitySource, needs: tuple[ResourceNeed, ...] = DEFAULT_NEEDS, *, strict: bool = True
) -> CapabilityReport:
    """``GET /metadata`` and assess it; with ``strict`` a server lacking something raises CapabilityError."""
    report = assess(await client.capabilities(), needs)
    if strict:
        report.raise_if_missing()
    return report
