"""JSON Lines files the CLI hands to users (dev splits, eval files): one sorted-key object per line.

Written to a temporary file beside the target and renamed, so an interrupted run never leaves a
half-written file that a later `eval --data` would read as a shorter split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write ``rows`` to ``path`` (parents created); returns how many lines were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with staging.open("w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True) + "\n")
                count += 1
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    staging.replace(path)
    return count
