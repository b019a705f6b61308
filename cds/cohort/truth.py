"""Writes a cohort to disk: ground truth (notes, overprescriptions, visits, manifest) and FHIR NDJSON.

Output is byte-for-byte reproducible: records keep generation order, JSON has fixed separators.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cds.cohort.records import Cohort
from cds.errors import CohortConfigError, CohortError

TRUTH_FILES = ("notes.jsonl", "overprescriptions.jsonl", "visits.jsonl", "manifest.json")
# a full or failing disk is the operation failing (exit 1), not a folder the user must change (exit 2)
_OPERATIONAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def _line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
        tmp.replace(path)  # readers never see a half-written file
    except OSError as exc:
        raise _cannot_create(path, exc) from exc


def _ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_create(directory, exc) from exc


def _cannot_create(path: Path, exc: OSError) -> CohortError:
    if exc.errno in _OPERATIONAL_ERRNOS:
        return CohortError("OV-0043", f"cannot create {path}: {exc.strerror}")
    # a file in the way, no permission, a read-only mount: the place the user chose (exit 2); mkdir's
    # "File exists" would not say that a file sits where a folder must be
    why = "a file is in the way" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror
    return CohortConfigError("OV-0043", f"cannot create {path}: {why}; choose a writable directory")


def write_truth(cohort: Cohort, directory: Path) -> dict[str, Path]:
    """Write the four truth files into ``directory`` (created if needed); returns name -> path."""
    _ensure_dir(directory)
    paths = {name: directory / name for name in TRUTH_FILES}
    _write(paths["notes.jsonl"], (_line(n.to_json()) for n in cohort.notes))
    _write(paths["overprescriptions.jsonl"], (_line(o.to_json()) for o in cohort.overprescriptions))
    _write(paths["visits.jsonl"], (_line(v.to_json()) for v in cohort.visits))
    _write(paths["manifest.json"], [json.dumps(cohort.manifest(), indent=2, sort_keys=True) + "\n"])
    return paths


def check_layout(cohort: Cohort, directory: Path) -> None:
    """Refuse ``directory`` before anything is written when ``write_truth`` and ``write_ndjson`` could not
    complete in it: a ``fhir`` file in the way was found only after the truth files had been written."""
    for folder in (directory, directory / "fhir"):
        for place in (folder, *folder.parents):
            if place.is_dir():
                if not os.access(place, os.W_OK | os.X_OK):
                    raise CohortConfigError(
                        "OV-0043", f"cannot create {folder}: {place} is not writable; choose a writable directory"
                    )
                break
            if place.exists() or place.is_symlink():
                raise CohortConfigError(
                    "OV-0043", f"cannot create {folder}: a file is in the way at {place}; choose a writable directory"
                )
    kinds = {str(resource["resourceType"]) for resource in cohort.resources}
    files = [directory / name for name in TRUTH_FILES] + [directory / "fhir" / f"{kind}.ndjson" for kind in kinds]
    for path in sorted(files):
        if path.is_dir():
            raise CohortConfigError(
                "OV-0043", f"cannot create {path}: a folder is in the way; choose another directory"
            )


def write_ndjson(cohort: Cohort, directory: Path) -> dict[str, Path]:
    """One ``<Type>.ndjson`` file per resource type, like a FHIR bulk export; returns type -> path."""
    _ensure_dir(directory)
    by_type: dict[str, list[str]] = {}
    for resource in cohort.resources:
        by_type.setdefault(str(resource["resourceType"]), []).append(_line(resource))
    paths: dict[str, Path] = {}
    for kind in sorted(by_type):
        paths[kind] = directory / f"{kind}.ndjson"
        _write(paths[kind], by_type[kind])
    return paths


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read back one of the ``*.jsonl`` truth files."""
    try:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError as exc:
        raise CohortError("OV-0044", f"{path} does not exist; run `oncovigil cohort generate --out DIR` first") from exc
