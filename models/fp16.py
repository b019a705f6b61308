"""The fp16 variant of an exported model (``model_fp16.onnx``), which the runtime serves on CUDA.

Written by a build only where it is checked: its argmax labels must agree with the fp32 model's on at
least ``FP16_MIN_AGREEMENT`` of the check inputs, or the file is removed and GPU hosts run fp32. The check
runs where the variant will run when this host really has CUDA (``gpu_usable``, never the provider list,
which names CUDA on any host with onnxruntime-gpu). A CPU build host preparing directories for a GPU server
asks for ``always``: onnxruntime's CPU kernels then run the fp16 graph; they round the weights the same way but
accumulate differently from cuBLAS, so the card records where the check ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from models.runtime import CPU, CUDA, gpu_usable

FP16_FILE = "model_fp16.onnx"
FP16_MIN_AGREEMENT = 0.99
Fp16Mode = Literal["auto", "always", "never"]

# agreement(candidate ONNX file, providers to run it on) -> share of check inputs whose label matches fp32
Agreement = Callable[[Path, Sequence[str]], float]


@dataclass(frozen=True)
class Fp16Record:
    """What the build decided about fp16; goes into the model card's ``export.fp16``."""

    kept: bool
    note: str
    agreement: float | None = None
    checked_on: str | None = None
    min_agreement: float = FP16_MIN_AGREEMENT

    def as_record(self) -> dict[str, Any]:
        return {
            "file": FP16_FILE if self.kept else None,
            "label_agreement": self.agreement,
            "min_agreement": self.min_agreement,
            "checked_on": self.checked_on,
            "note": self.note,
        }


NOT_BUILT = Fp16Record(False, "not built (onnx_fp16 = never)")


def make_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and compute; inputs and outputs keep their types (int64 ids, float32 logits)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def try_fp16(
    fp32: Path,
    mode: Fp16Mode,
    agreement: Agreement,
    *,
    min_agreement: float = FP16_MIN_AGREEMENT,
    cuda: bool | None = None,
) -> Fp16Record:
    """Write ``model_fp16.onnx`` beside ``fp32`` when ``mode`` asks for it and its labels hold.

    ``cuda`` overrides the host probe (tests; a caller that already knows).
    """
    if mode == "never":
        return NOT_BUILT
    on_cuda = gpu_usable() if cuda is None else cuda
    if not on_cuda and mode == "auto":
        return Fp16Record(
            False,
            "not built: no CUDA device at build time to check it (onnx_fp16 = always builds it here, "
            "checked on CPU); GPU hosts run fp32",
        )
    target = fp32.with_name(FP16_FILE)
    make_fp16(fp32, target)
    providers = [CUDA, CPU] if on_cuda else [CPU]
    score = round(agreement(target, providers), 4)
    kept = score >= min_agreement
    if not kept:
        target.unlink()
    verdict = "kept" if kept else f"removed (below {min_agreement})"
    return Fp16Record(kept, f"label agreement {score} on {providers[0]}: {verdict}", score, providers[0], min_agreement)
