"""Reading Bundles: entries by search mode, the ``next`` link, transaction responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Resource = dict[str, Any]


def next_link(bundle: Resource) -> str | None:
    """``Bundle.link`` with relation ``next``, exactly as the server wrote it."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def entries(bundle: Resource) -> Iterator[Resource]:
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict):
            yield entry


def matches(bundle: Resource) -> Iterator[Resource]:
    """Resources the search matched (``search.mode`` match or absent); includes and outcomes left out."""
    for entry in entries(bundle):
        resource = entry.get("resource")
        mode = (entry.get("search") or {}).get("mode", "match")
        if isinstance(resource, dict) and mode == "match" and resource.get("resourceType") != "OperationOutcome":
            yield resource


def included(bundle: Resource) -> Iterator[Resource]:
    """Resources added by ``_include`` / ``_revinclude`` (``search.mode`` include)."""
    for entry in entries(bundle):
        resource = entry.get("resource")
        if isinstance(resource, dict) and (entry.get("search") or {}).get("mode") == "include":
            yield resource


def resources_of(value: Any) -> Iterator[Resource]:
    """Every resource in a Bundle, a single resource or a list of either (CDS Hooks prefetch values)."""
    if isinstance(value, list):
        for item in value:
            yield from resources_of(item)
        return
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        for entry in entries(value):
            yield from resources_of(entry.get("resource"))
        return
    if "resourceType" in value:
        yield value


def status_code(entry_response: Resource) -> int:
    """The numeric part of a transaction-response ``entry.response.status`` ("201 Created" -> 201)."""
    text = str(entry_response.get("status", "")).strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0
