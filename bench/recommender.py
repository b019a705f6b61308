"""Recommender scoring cost: shared-prefix batched scoring vs one full pass per candidate, torch vs ONNX, CPU.

Scores 5, 20 and 100 candidate drugs for one patient four ways and prints (and writes to
``bench/RESULTS_recommender.md``) the median wall time of each, with the ratios side by side. Ratios only:
no timed assertions. Needs the built model directory (``oncovigil models build``) and the committed
artifact (the torch side merges the adapter into the base again).

    python bench/recommender.py [--model-dir DIR] [--artifact DIR] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cds.formulary import default_formulary
from cds.settings import load_settings
from models.recommender import PatientSummary
from models.recommender.tokens import answer_ids, encode_prompt

ROOT = Path(__file__).resolve().parent.parent
PATIENT = PatientSummary(
    age=67,
    sex="female",
    conditions=("breast cancer, HER2-negative", "hypertension", "type 2 diabetes"),
    previous_medications=("doxorubicin", "cyclophosphamide", "ondansetron", "dexamethasone", "pegfilgrastim"),
    allergies=("penicillin",),
    history="Stage II breast cancer, HER2-negative; regimen AC-T; grade 3 neutrophil count decreased on "
    "doxorubicin (2025-07-22); grade 2 nausea on cyclophosphamide (2025-07-01)",
)
SIZES = (5, 20, 100)


def candidates(n: int) -> list[str]:
    names = [d.name for d in default_formulary().drugs]
    out = list(names)
    while len(out) < n:
        out += [f"{name} {len(out) // len(names) + 1}" for name in names]
    return out[:n]


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocations, onnxruntime arena, torch kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--artifact", type=Path, default=ROOT / "models" / "artifacts" / "recommender")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_recommender.md")
    args = parser.parse_args()

    import numpy as np
    import torch

    from models.recommender import load_recommender
    from models.recommender.export import load_source
    from models.recommender.torch_scoring import margins_full, p_yes_cached
    from models.registry import RuntimeConfig
    from models.runtime import CPU

    torch.set_num_threads(args.threads)
    model_dir = args.model_dir or load_settings().resolved_models_dir / "recommender"
    recommender = load_recommender(model_dir, RuntimeConfig(providers=(CPU,), threads=args.threads, allow_int8=False))
    model, base, settings = load_source(args.artifact)
    fmt = settings.prompt
    yes_id, no_id = answer_ids(base.backend, fmt)

    rows = []
    for n in SIZES:
        drugs = candidates(n)
        prefix, suffixes = encode_prompt(base.backend, fmt, PATIENT, drugs)

        def torch_full(p: list[int] = prefix, s: list[list[int]] = suffixes) -> Any:
            with torch.no_grad():
                return margins_full(model, p, s, yes_id, no_id)

        def torch_cached(p: list[int] = prefix, s: list[list[int]] = suffixes) -> Any:
            return p_yes_cached(model, p, s, yes_id, no_id, no_id)

        def onnx_full(d: list[str] = drugs) -> Any:
            return recommender.score(PATIENT, d, cached=False)

        def onnx_cached(d: list[str] = drugs) -> Any:
            return recommender.score(PATIENT, d, cached=True)

        a = np.array([s.p_yes for s in onnx_cached()])
        b = torch.sigmoid(torch_full().double()).numpy()
        timing = {
            name: median_seconds(fn, args.repeats)
            for name, fn in (
                ("torch_full", torch_full),
                ("torch_cached", torch_cached),
                ("onnx_full", onnx_full),
                ("onnx_cached", onnx_cached),
            )
        }
        rows.append((n, len(prefix), sum(map(len, suffixes)) / n, timing, float(np.abs(a - b).max())))
        print(n, {k: round(v * 1000) for k, v in timing.items()}, flush=True)

    lines = [
        "# Recommender scoring benchmark",
        "",
        f"Model: `{model_dir}` (SmolLM2-135M-Instruct + LoRA, fp32); CPU only, {args.threads} threads; "
        f"{platform.processor() or platform.machine()}; median of {args.repeats} runs after a warm-up.",
        "One patient; the prefix (structured summary) is encoded once for `cached`, the candidates are scored",
        "as a right-padded batch of suffixes over its keys/values (chunks of 16); `full` runs one forward pass",
        "over prefix + suffix per candidate.",
        "",
        "| candidates | prefix tokens | mean suffix tokens | torch full ms | torch cached ms | ONNX full ms "
        "| ONNX cached ms | full/cached (torch) | full/cached (ONNX) | torch/ONNX (cached) | max abs ΔP(yes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, plen, slen, t, diff in rows:
        lines.append(
            f"| {n} | {plen} | {slen:.1f} | {t['torch_full'] * 1e3:.0f} | {t['torch_cached'] * 1e3:.0f} | "
            f"{t['onnx_full'] * 1e3:.0f} | {t['onnx_cached'] * 1e3:.0f} | "
            f"{t['torch_full'] / t['torch_cached']:.2f}x | {t['onnx_full'] / t['onnx_cached']:.2f}x | "
            f"{t['torch_cached'] / t['onnx_cached']:.2f}x | {diff:.1e} |"
        )
    lines += ["", "ΔP(yes): ONNX shared-prefix cache vs torch full pass, same candidates.", ""]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
