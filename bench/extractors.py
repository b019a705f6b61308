"""Extractor benchmark: the same ADE model on the same synthetic notes, PyTorch eager vs ONNX Runtime.

Backends: torch eager fp32 (the merged LoRA model), ORT fp32 and ORT dynamic int8 on CPU, and on a GPU
(when onnxruntime really takes CUDA) ORT fp32 and fp16 with IO binding plus torch eager on CUDA.
Every backend runs the *whole* extractor (sentence split, length buckets, tagging, pairing, cues, CTCAE
vectors); only the encoder call differs. Reports notes/s, the ratio to torch eager, and single-note
p50/p95 latency; prints a markdown table and writes it with the machine to bench/RESULTS_extractors.md.

    .venv/bin/python bench/extractors.py --notes 1000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds.cohort import generate_cohort  # noqa: E402
from cds.settings import load_settings  # noqa: E402
from models import RuntimeConfig  # noqa: E402
from models.ade import AdeExtractor  # noqa: E402
from models.encoder_export import (  # noqa: E402
    HIDDEN_OUTPUT,
    artifact_backbone_dir,
    load_merged_torch,
)
from models.encoder_infer import EncoderTokenizer, TokenClassifierRunner, read_labels  # noqa: E402
from models.fp16 import FP16_FILE, make_fp16  # noqa: E402
from models.runtime import CPU, CUDA, LoadedSession, load_session  # noqa: E402


@dataclass
class Result:
    backend: str
    device: str
    notes: int
    seconds: float
    p50_ms: float
    p95_ms: float
    findings: int

    @property
    def notes_per_s(self) -> float:
        return self.notes / self.seconds


class TorchSession:
    """Looks like an InferenceSession to the runner: ``run(output_names, feeds)`` on the eager model."""

    def __init__(self, model: Any, device: str) -> None:
        import torch

        self._torch = torch
        self._model = model.to(device)
        self._device = device

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(self._device) for k, v in feeds.items()}
            want_hidden = outputs is not None and HIDDEN_OUTPUT in outputs
            result = self._model(**tensors, output_hidden_states=want_hidden)
            produced = {"logits": result.logits}
            if want_hidden:
                produced[HIDDEN_OUTPUT] = result.hidden_states[-1]
            names = list(outputs) if outputs else ["logits"]
            return [produced[n].float().cpu().numpy() for n in names]


class IoBindingSession:
    """ORT on CUDA with IO binding: inputs copied to the device once, outputs fetched from it."""

    def __init__(self, loaded: LoadedSession) -> None:
        self._session = loaded.session

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import onnxruntime as ort

        binding = self._session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        names = list(outputs) if outputs else ["logits"]
        for name in names:
            binding.bind_output(name, "cuda", 0)
        self._session.run_with_iobinding(binding)
        return [v.numpy() for v in binding.copy_outputs_to_cpu()]


def _extractor(model_dir: Path, loaded: LoadedSession, max_len: int) -> AdeExtractor:
    """The shipped extractor (its CTCAE embedder, terms and tuned threshold) around another tagger backend."""
    shipped = AdeExtractor.load(model_dir, RuntimeConfig(providers=(CPU,), allow_int8=False))
    runner = TokenClassifierRunner(loaded, EncoderTokenizer(model_dir / "tokenizer.json", max_len))
    return AdeExtractor(runner, read_labels(model_dir), shipped.ctcae, shipped.config)


def _wrap(session: Any, provider: str, template: LoadedSession) -> LoadedSession:
    return LoadedSession(session, provider, template.input_names, template.output_names, template.path)


def measure(name: str, device: str, extractor: AdeExtractor, notes: Sequence[str], latency_notes: int) -> Result:
    extractor.predict(notes[:8])  # warm-up: allocations, CUDA kernels, thread pools
    started = time.perf_counter()
    findings = sum(len(f) for f in extractor.pipe(iter(notes), batch_size=32))
    seconds = time.perf_counter() - started
    latencies = []
    for note in notes[:latency_notes]:
        t0 = time.perf_counter()
        extractor.predict([note])
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return Result(name, device, len(notes), seconds, statistics.median(latencies), p95, findings)


def backends(model_dir: Path, artifact: Path, threads: int) -> list[tuple[str, str, Callable[[], AdeExtractor]]]:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    max_len = 128
    fp32 = load_session(model_dir / "model.onnx", [CPU], threads)
    plans: list[tuple[str, str, Callable[[], AdeExtractor]]] = []

    base = artifact_backbone_dir(artifact, load_settings().backbones_dir)

    def torch_eager(device: str) -> AdeExtractor:
        model, _ = load_merged_torch(artifact, base)
        return _extractor(model_dir, _wrap(TorchSession(model, device), f"torch-{device}", fp32), max_len)

    plans.append(("PyTorch eager fp32", "cpu", lambda: torch_eager("cpu")))
    plans.append(("ONNX Runtime fp32", "cpu", lambda: _extractor(model_dir, fp32, max_len)))
    if (model_dir / "model_int8.onnx").is_file():
        int8 = model_dir / "model_int8.onnx"
        plans.append(
            (
                "ONNX Runtime int8 (dynamic)",
                "cpu",
                lambda: _extractor(model_dir, load_session(int8, [CPU], threads), max_len),
            )
        )
    else:
        scratch = Path(tempfile.mkdtemp()) / "model_int8.onnx"
        from models.encoder_export import quantize_int8

        quantize_int8(model_dir / "model.onnx", scratch)
        plans.append(
            (
                "ONNX Runtime int8 (dynamic, not shipped)",
                "cpu",
                lambda: _extractor(model_dir, load_session(scratch, [CPU], threads), max_len),
            )
        )
    probe = load_session(model_dir / "model.onnx", [CUDA, CPU], threads)
    if probe.provider == CUDA and torch.cuda.is_available():
        fp16 = model_dir / FP16_FILE  # the checked variant `models build` wrote, as served
        if not fp16.is_file():
            fp16 = Path(tempfile.mkdtemp()) / FP16_FILE
            make_fp16(model_dir / "model.onnx", fp16)
        plans.append(("PyTorch eager fp32", "cuda", lambda: torch_eager("cuda")))
        plans.append(("ONNX Runtime fp32", "cuda", lambda: _extractor(model_dir, probe, max_len)))

        def ort_fp16() -> AdeExtractor:
            loaded = load_session(fp16, [CUDA], threads, require=CUDA)
            return _extractor(model_dir, _wrap(IoBindingSession(loaded), CUDA, loaded), max_len)

        plans.append(("ONNX Runtime fp16 + IO binding", "cuda", ort_fp16))
    return plans


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    import onnxruntime
    import torch

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; load average at start {load[0]:.1f}"
    )


def table(results: Sequence[Result]) -> str:
    base = {r.device: r.notes_per_s for r in results if r.backend.startswith("PyTorch")}
    rows = [
        "| backend | device | notes | notes/s | × torch eager | p50 ms/note | p95 ms/note | findings |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = r.notes_per_s / base[r.device] if r.device in base else float("nan")
        rows.append(
            f"| {r.backend} | {r.device} | {r.notes} | {r.notes_per_s:.1f} | {ratio:.2f} | "
            f"{r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.findings} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "var" / "models" / "ade")
    parser.add_argument("--artifact", type=Path, default=ROOT / "models" / "artifacts" / "ade")
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--latency-notes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_extractors.md")
    args = parser.parse_args()
    if not (args.model_dir / "model.onnx").is_file():
        sys.exit(f"{args.model_dir} has no model.onnx; run `oncovigil models build` first")

    notes: list[str] = []
    patients = 50
    while len(notes) < args.notes:
        notes = [n.text for n in generate_cohort(patients, args.seed).notes]
        patients *= 2
    notes = notes[: args.notes]
    chars = sum(len(n) for n in notes)
    header = machine()
    print(f"{len(notes)} synthetic notes (cohort seed {args.seed}), {chars / len(notes):.0f} chars/note on average")
    print(header)
    results = []
    for name, device, build in backends(args.model_dir, args.artifact, args.threads):
        result = measure(name, device, build(), notes, args.latency_notes)
        print(f"  {name} [{device}]: {result.notes_per_s:.1f} notes/s", flush=True)
        results.append(result)
    markdown = table(results)
    print(markdown)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out.write_text(
        "# Extractor benchmark: ADE extractor, PyTorch eager vs ONNX Runtime\n\n"
        f"Run {stamp} with `.venv/bin/python bench/extractors.py --notes {args.notes} --threads {args.threads}`.\n\n"
        f"- Machine: {header}.\n"
        f"- Input: {len(notes)} synthetic oncology notes (`cds.cohort.generate_cohort`, seed {args.seed}), "
        f"{chars / len(notes):.0f} characters on average; latency over the first {args.latency_notes} notes, one "
        "note per call.\n"
        "- Every row runs the whole extractor (sentence split, length buckets of up to 32 sentences, tagging, "
        "pairing, cue rules, CTCAE term lookup with the shipped ORT embedder); only the tagger backend differs. "
        "Same thread count for torch and ORT.\n\n"
        f"{markdown}\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
