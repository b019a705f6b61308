"""Reading the files of a model directory so that a damaged one is a ``ModelLoadError`` naming the file.

A folder the user brings (a Hugging Face or ONNX directory) may have no model card, so no hash check stands
between a corrupt file and its parser; the parsers' own exceptions would surface as internal errors. Each
loader passes its own ``code`` (so existing codes stay stable) and, where rebuilding is not the remedy, its
own ``fix`` and error class (a refinement's retrieval index is user data: ``DataFormatError``).

Only the exceptions each library raises for a bad file are caught, never around our own code.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import ModelError, ModelLoadError

REBUILD = "rebuild the model directory with `oncovigil models build`, or check the file if the folder is your own"
REFINE = "build the index again with `oncovigil refine`"

# What numpy's zip reading raises for a damaged .npz: a truncated or garbled archive (BadZipFile, EOFError,
# OSError from a seek past the end), a damaged deflate stream (zlib.error), flag bits zipfile reads as an
# unknown compression method (NotImplementedError) or as encryption (RuntimeError), a bad member (ValueError).
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def invalid(
    path: Path, code: str, problem: str, fix: str = REBUILD, error: type[ModelError] = ModelLoadError
) -> ModelError:
    """The error for a file of a model directory that exists but cannot be used; ``problem`` says why."""
    return error(code, f"{path} {problem}; {fix}")


def read_model_text(path: Path, code: str, fix: str = REBUILD, error: type[ModelError] = ModelLoadError) -> str:
    """The file as UTF-8 text."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise invalid(path, code, "is missing", fix, error) from exc
    except OSError as exc:
        raise invalid(path, code, f"cannot be read ({exc.strerror or exc})", fix, error) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        problem = f"is not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})"
        raise invalid(path, code, problem, fix, error) from exc


def load_json(path: Path, code: str, fix: str = REBUILD, error: type[ModelError] = ModelLoadError) -> Any:
    text = read_model_text(path, code, fix, error)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # also too-long integers and too-deep nesting
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise invalid(path, code, f"is not valid JSON ({reason})", fix, error) from exc


def load_json_object(
    path: Path, code: str, fix: str = REBUILD, error: type[ModelError] = ModelLoadError
) -> dict[str, Any]:
    value = load_json(path, code, fix, error)
    if not isinstance(value, dict):
        raise invalid(path, code, f"holds a JSON {type(value).__name__}, not an object", fix, error)
    return value


def open_tokenizer(path: Path, code: str, fix: str = REBUILD) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json``."""
    from tokenizers import Tokenizer

    text = read_model_text(path, code, fix)
    try:
        return Tokenizer.from_str(text)
    except Exception as exc:
        # tokenizers reports every bad file (bad JSON, a missing field, an unknown model) as a bare
        # Exception; anything more specific is not the file's fault and must stay an internal error.
        if type(exc) is not Exception:
            raise
        raise invalid(path, code, f"is not a valid tokenizer file ({exc})", fix) from exc


def load_npz(
    path: Path,
    code: str,
    fix: str = REBUILD,
    error: type[ModelError] = ModelLoadError,
    required: Sequence[str] = (),
) -> dict[str, npt.NDArray[Any]]:
    """Every array of an ``.npz`` archive, read now: numpy reads members lazily, so damage shows on access."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array
            raise invalid(path, code, "is not an .npz archive", fix, error)
        with data:
            arrays = {name: data[name] for name in data.files}
    except _NPZ_ERRORS as exc:
        raise invalid(path, code, f"is not a readable .npz archive ({_reason(exc)})", fix, error) from exc
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise invalid(path, code, f"holds {name!r}, which is not a numpy array", fix, error)
    missing = [name for name in required if name not in arrays]
    if missing:
        raise invalid(path, code, f"lacks {missing} (it holds {sorted(arrays)})", fix, error)
    return arrays


def npz_names(
    arrays: Mapping[str, npt.NDArray[Any]],
    name: str,
    path: Path,
    code: str,
    fix: str = REBUILD,
    error: type[ModelError] = ModelLoadError,
) -> tuple[str, ...]:
    """A list of names an archive keeps as JSON text in a 0-d string array (the retrieval indexes' labels)."""
    value = arrays[name]
    names: Any = None
    if value.ndim == 0 and value.dtype.kind == "U":
        try:
            names = json.loads(str(value))
        except (ValueError, RecursionError):
            names = None  # reported below with the other malformed cases
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise invalid(path, code, f"holds {name!r}, which is not a JSON list of names", fix, error)
    return tuple(names)


def rows_agree(
    arrays: Mapping[str, npt.NDArray[Any]],
    path: Path,
    code: str,
    fix: str = REBUILD,
    error: type[ModelError] = ModelLoadError,
) -> None:
    """``vectors`` is a 2-D array of numbers; every other array but a 0-d one is whole numbers, a row per vector."""
    vectors = arrays["vectors"]
    if vectors.ndim != 2 or vectors.dtype.kind not in "fiu":
        raise invalid(
            path, code, f"holds vectors of shape {vectors.shape} ({vectors.dtype}), not a 2-D array", fix, error
        )
    for name, value in arrays.items():
        if name == "vectors" or value.ndim == 0:
            continue
        if value.dtype.kind not in "iu" or len(value) != len(vectors):
            problem = f"holds {name!r} as {len(value)} rows of {value.dtype} for {len(vectors)} vectors"
            raise invalid(path, code, problem, fix, error)


def load_npy(path: Path, code: str, fix: str = REBUILD, error: type[ModelError] = ModelLoadError) -> npt.NDArray[Any]:
    try:
        value = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as exc:  # a file that starts like a zip is opened as an archive
        raise invalid(path, code, f"is not a readable .npy array ({_reason(exc)})", fix, error) from exc
    if isinstance(value, np.lib.npyio.NpzFile):
        value.close()
        raise invalid(path, code, "is an .npz archive, not an .npy array", fix, error)
    if not isinstance(value, np.ndarray):
        raise invalid(path, code, "is not an .npy array", fix, error)
    return value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    # numpy says "pickled data" of any file without its magic bytes, and advises unpickling it: neither fits
    if text.startswith("This file contains pickled"):
        return "not numpy's format, or pickled Python objects, which are never loaded"
    return text or type(exc).__name__
