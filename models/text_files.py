"""Reading user-supplied text and JSON-lines data files so that every bad file is a ``DataFormatError``.

Each reader passes its own codes: ``code`` for problems with the file as a whole (missing, a directory,
unreadable, not UTF-8) and ``line_code`` for a line that is not JSON, so existing codes stay stable.
``expected`` completes "pass ..." in the messages, e.g. ``"a DrugComb-format .jsonl file"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from models.errors import DataFormatError


def _open(path: Path, code: str, expected: str) -> BinaryIO:
    if path.is_dir():
        raise DataFormatError(code, f"{path} is a directory, not a file; pass {expected}")
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise DataFormatError(code, f"{path} does not exist; pass {expected}") from exc
    except OSError as exc:
        raise DataFormatError(code, f"cannot read {path} ({exc.strerror or exc}); pass {expected}") from exc


def _not_utf8(path: Path, line: int, exc: UnicodeDecodeError, code: str) -> DataFormatError:
    byte = exc.object[exc.start]
    return DataFormatError(
        code, f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}); the file must be UTF-8, so re-save it as UTF-8"
    )


def read_text(path: Path, code: str, expected: str) -> str:
    """The whole file as UTF-8 text."""
    with _open(path, code, expected) as fh:
        try:
            data = fh.read()
        except OSError as exc:
            raise DataFormatError(code, f"cannot read {path} ({exc.strerror or exc}); pass {expected}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, data.count(b"\n", 0, exc.start) + 1, exc, code) from exc


def jsonl_values(path: Path, code: str, expected: str, line_code: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line; whether a value is an object is the caller's check.

    Lines are split on ``\\n`` only, as JSON Lines specifies: U+2028 or U+0085 may sit unescaped inside a
    JSON string, and ``str.splitlines`` would cut the record there.
    """
    with _open(path, code, expected) as fh:
        try:
            for number, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _not_utf8(path, number, exc, code) from exc
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except (ValueError, RecursionError) as exc:  # also too-long integers and too-deep nesting
                    reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or type(exc).__name__
                    raise DataFormatError(
                        line_code or code, f"{path}:{number}: not valid JSON ({reason}); fix the line"
                    ) from exc
                yield number, value
        except OSError as exc:
            raise DataFormatError(code, f"cannot read {path} ({exc.strerror or exc}); pass {expected}") from exc
