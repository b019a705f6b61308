"""Summarising 100 drug groups on CPU: the guarded generative summariser vs the deterministic narrative.

Builds 100 grouped drug records (synthetic cohort, seed 303, plus ADE-Corpus-V2 groups when
``../shared/data`` exists), then times (median of ``--repeats``) the deterministic narrative, the generator
alone (fact-copy decoding), the whole guarded path (generate + guard + fallback) and the same guarded path
with free decoding, and prints (and writes to
``bench/RESULTS_summaries.md``) the seconds side by side with the fallback count. Ratios only: no timed
assertions. Needs a built summariser (``oncovigil models build`` or ``oncovigil train summaries``).

    python bench/summaries.py [--model-dir DIR] [--groups 100] [--repeats 3] [--threads 2] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cds.settings import load_settings
from cds.summarise import MODEL_DIR, GuardedSummariser, read_vocabulary
from cds.summary_data import cohort_groups, corpus_groups
from models.summariser import DrugGroup, narrate
from models.summariser.generator import load_summariser

ROOT = Path(__file__).resolve().parent.parent


def groups(n: int, data_dir: Path) -> list[DrugGroup]:
    out = cohort_groups(200, 303, (365, 182))
    if (data_dir / "ade_corpus_v2").is_dir():
        out += corpus_groups(data_dir, seed=303)
    step = max(1, len(out) // n)
    return out[::step][:n]


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = load_settings()
    parser.add_argument("--model-dir", type=Path, default=settings.resolved_models_dir / MODEL_DIR)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    records = groups(args.groups, settings.data_dir)
    summariser = load_summariser(args.model_dir, ["CPUExecutionProvider"], args.threads, batch_size=args.batch)
    free = summariser.decoding(fact_copy=False)
    guarded = GuardedSummariser(summariser, read_vocabulary(args.model_dir))
    guarded_free = GuardedSummariser(free, read_vocabulary(args.model_dir))
    summariser.summarise(records[:4])  # warm-up: onnxruntime arena, tokenizer
    free.summarise(records[:4])
    deterministic = median_seconds(lambda: [narrate(g) for g in records], args.repeats)
    generate = median_seconds(lambda: summariser.summarise(records), args.repeats)
    full = median_seconds(lambda: guarded.summarise(records), args.repeats)
    fallbacks = guarded.counts.guard_fallbacks // args.repeats
    free_full = median_seconds(lambda: guarded_free.summarise(records), args.repeats)
    free_fallbacks = guarded_free.counts.guard_fallbacks // args.repeats
    load = os.getloadavg()[0]
    lines = [
        f"# Summaries bench: {len(records)} drug groups, CPU",
        "",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load:.1f} at the end; onnxruntime threads {args.threads}, batch {args.batch}; model "
        f"{args.model_dir} ({summariser.provider})",
        "",
        f"| path | seconds (median of {args.repeats}) | per group (ms) | vs deterministic |",
        "|---|---|---|---|",
        f"| deterministic narrative | {deterministic:.3f} | {1000 * deterministic / len(records):.2f} | 1x |",
        f"| generate only (ONNX, greedy, fact-copy) | {generate:.2f} | {1000 * generate / len(records):.1f} | "
        f"{generate / max(deterministic, 1e-9):.0f}x |",
        f"| generate + guard + fallback | {full:.2f} | {1000 * full / len(records):.1f} | "
        f"{full / max(deterministic, 1e-9):.0f}x |",
        f"| free decoding + guard + fallback | {free_full:.2f} | {1000 * free_full / len(records):.1f} | "
        f"{free_full / max(deterministic, 1e-9):.0f}x |",
        "",
        f"fact-copy vs free decoding, guarded: {free_full / max(full, 1e-9):.2f}x faster",
        f"guard fallbacks (published deterministic narrative instead): {fallbacks} of {len(records)} groups with "
        f"fact-copy decoding, {free_fallbacks} with free decoding",
        "target: 100 drug groups in under 60 s on CPU",
    ]
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "RESULTS_summaries.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
