"""Validation of what we write, before it leaves: R4 structure (``fhir.resources.R4B``) and reference targets.

``fhir.resources`` checks cardinality, types and value sets it knows, but not which resource types a
Reference may point to; R4 is strict there (``AdverseEvent.recorder`` cannot be a Device,
``suspectEntity.instance`` cannot be a MedicationRequest) and HAPI rejects such resources, so we check it.
The top-level ``fhir.resources`` models are R5: never use them for R4 data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.reference import Reference
from pydantic import BaseModel, ValidationError

from adapters.errors import ResourceBuildError

Resource = dict[str, Any]


def _references(model: BaseModel, path: str) -> Iterator[tuple[str, Reference, list[str]]]:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        allowed = extra.get("enum_reference_types")
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            where = f"{path}.{name}" + (f"[{index}]" if isinstance(value, list) else "")
            if isinstance(item, Reference) and isinstance(allowed, list):
                yield where, item, [str(a) for a in allowed]
            if isinstance(item, BaseModel) and not isinstance(item, FHIRResourceModel):
                yield from _references(item, where)


def _target_type(reference: str, contained: Mapping[str, str], placeholders: Mapping[str, str]) -> str | None:
    if reference.startswith("#"):
        return contained.get(reference[1:])
    if reference.startswith("urn:"):
        return placeholders.get(reference)
    head = reference.split("?", 1)[0]
    parts = head.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if "?" in reference:
        return parts[-1] if parts else None
    return parts[-2] if len(parts) >= 2 else None


def reference_problems(model: FHIRResourceModel, placeholders: Mapping[str, str] | None = None) -> list[str]:
    """Every Reference in the resource whose target type R4 does not allow there."""
    contained = {str(c.id): c.get_resource_type() for c in getattr(model, "contained", None) or [] if c.id}
    problems: list[str] = []
    for where, reference, allowed in _references(model, model.get_resource_type()):
        if not reference.reference or "Resource" in allowed:
            continue
        target = _target_type(reference.reference, contained, placeholders or {})
        if target is None:
            problems.append(f"{where}: cannot tell the target type of {reference.reference!r}")
        elif target not in allowed:
            problems.append(f"{where}: {target} is not allowed (R4 allows {', '.join(allowed)})")
    for child in getattr(model, "contained", None) or []:
        problems.extend(reference_problems(child, placeholders))
    return problems


def validated(resource: Resource, *, placeholders: Mapping[str, str] | None = None) -> Resource:
    """Validate as FHIR R4 and return the canonical JSON form; raise ResourceBuildError otherwise.

    ``placeholders`` maps ``urn:uuid`` fullUrls of the same transaction to their resource types.
    """
    rtype = str(resource.get("resourceType", ""))
    try:
        model_class = get_fhir_model_class(rtype)
    except (KeyError, ValueError) as exc:
        raise ResourceBuildError(
            "OV-1081", f"{rtype or 'a resource without resourceType'} is not an R4 resource type"
        ) from exc
    try:
        model = model_class.model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise ResourceBuildError(
            "OV-1080", f"{rtype} built by OncoVigil is not valid FHIR R4 ({problems}); this is a bug"
        ) from exc
    assert isinstance(model, FHIRResourceModel)  # get_fhir_model_class only returns resource models
    problems_found = reference_problems(model, placeholders)
    if problems_found:
        raise ResourceBuildError(
            "OV-1082",
            f"{rtype} built by OncoVigil has invalid references ({'; '.join(problems_found)}); this is a bug",
        )
    dumped: Resource = model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return dumped
