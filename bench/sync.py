"""How well the nightly sync hides FHIR I/O behind inference, and whether its memory stays flat.

Usage:

    python bench/sync.py [--patients 20] [--scale 10] [--models DIR] [--batch 16] [--url URL]
                         [--threads 0] [--no-spin] [--pin] [--out bench/RESULTS_sync.md]

For each cohort size (``--patients`` and ``--patients * --scale``; the generator with one seed extends the
smaller cohort, so the second seeding only adds patients) it seeds the server, then runs two child
processes on the same notes and the same loaded models:

- ``sync``: one ``SyncJob`` from an empty state database, end to end (pull, extract, write AdverseEvents and
  Provenance, orders, summaries); notes per second = notes processed / job seconds;
- ``extract``: the notes pulled first (not timed), then the extractors alone over the same batches.

The ratio of the two rates shows how much of the FHIR traffic the pipelined stages hide (target >= 0.8).
Each child reports its peak resident memory (``ru_maxrss``) and its memory right after loading the models;
at 1x and 10x the peaks should be about equal (target: flat). Without ``--url`` a dedicated in-memory HAPI
sandbox is started and stopped. ``--threads`` / ``--no-spin`` set the ONNX session (intra-op threads, idle
threads sleeping instead of busy-waiting) of both children alike. ``--pin`` gives the sandbox server the last
core and both children the others (ONNX threads = their count unless ``--threads``): on a small machine this
stands in for a FHIR server on its own host, so the ratio measures the I/O the pipeline hides rather than the
CPU the server takes from inference. The server's CPU seconds during each child are recorded. Prints a
Markdown table and writes it with the machine facts to ``--out``.
Numbers are for comparison side by side, never for timed assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COHORT_SEED = 7


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _settings(args: argparse.Namespace, home: Path) -> Any:
    from cds.settings import load_settings

    return load_settings(
        home=home, fhir_base_url=args.url, models_dir=Path(args.models), state_db_url=f"sqlite:///{home}/state.db",
        onnx_providers=args.providers.split(","), sync_batch_size=args.batch, fhir_read_timeout_s=300.0,
        onnx_threads=args.threads, onnx_spin_wait=not args.no_spin,
    )


async def _child_sync(args: argparse.Namespace) -> dict[str, Any]:
    from adapters import FhirClient
    from cds.extraction import load_extractors
    from cds.runner import fhir_config, runtime_config
    from cds.state import StateStore
    from cds.sync import SyncJob, SyncOptions

    home = Path(args.home)
    settings = _settings(args, home)
    store = StateStore(str(settings.state_db_url))
    started = time.perf_counter()
    extractors = load_extractors(settings.resolved_models_dir, runtime_config(settings))
    load_s = time.perf_counter() - started
    after_load = _rss_mb()
    options = SyncOptions(batch_size=args.batch, write_batch_size=settings.fhir_write_batch_size,
                          summary_window_days=settings.summary_window_days)
    stages: dict[str, float] = {"extract_in_sync": 0.0}
    run_batch = extractors.run

    def counted(texts: Any) -> Any:
        # inference time inside the sync: above the extract-only time, the cores were busy elsewhere
        began = time.perf_counter()
        try:
            return run_batch(texts)
        finally:
            stages["extract_in_sync"] += time.perf_counter() - began

    extractors.run = counted  # type: ignore[method-assign]
    async with FhirClient(fhir_config(settings)) as client:
        job = SyncJob(store, client, extractors, options)
        for stage in ("_sync_notes", "_sync_orders", "_write_summaries"):
            setattr(job, stage, _timed(getattr(job, stage), stage.strip("_"), stages))
        began = time.perf_counter()
        report = await job.run()
        seconds = time.perf_counter() - began
    store.close()
    return {"mode": "sync", "notes": int(report.counts.get("notes_processed", 0)), "seconds": seconds,
            "stage_seconds": stages, "load_s": load_s, "rss_after_load_mb": after_load, "peak_rss_mb": _rss_mb(),
            "status": report.status, "counts": report.counts, "models": extractors.versions,
            "errors": report.errors[:5]}


def _timed(stage: Any, name: str, into: dict[str, float]) -> Any:
    """Wraps one stage of the job (a bench may look inside; the job itself stays unchanged)."""

    async def run(*args: Any) -> Any:
        began = time.perf_counter()
        try:
            return await stage(*args)
        finally:
            into[name] = time.perf_counter() - began

    return run


async def _child_extract(args: argparse.Namespace) -> dict[str, Any]:
    from adapters import FhirClient, pull_notes
    from cds.extraction import load_extractors
    from cds.runner import fhir_config, runtime_config
    from cds.sync import GENERATED_NOTE_TYPES

    settings = _settings(args, Path(args.home))
    started = time.perf_counter()
    extractors = load_extractors(settings.resolved_models_dir, runtime_config(settings))
    load_s = time.perf_counter() - started
    after_load = _rss_mb()
    async with FhirClient(fhir_config(settings)) as client:
        texts = [n.text async for n in pull_notes(client, None) if n.type_code not in GENERATED_NOTE_TYPES]
    began = time.perf_counter()
    for start in range(0, len(texts), args.batch):
        extractors.run(texts[start:start + args.batch])
    seconds = time.perf_counter() - began
    return {"mode": "extract", "notes": len(texts), "seconds": seconds, "load_s": load_s,
            "rss_after_load_mb": after_load, "peak_rss_mb": _rss_mb()}


def _run_child(mode: str, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    server_before = _cpu_seconds(args.server_pid) if args.server_pid else 0.0
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--url", args.url, "--models",
           args.models, "--batch", str(args.batch), "--providers", args.providers, "--home", str(home),
           "--threads", str(args.threads), *(["--no-spin"] if args.no_spin else []),
           *(["--cpus", ",".join(map(str, sorted(args.client_cpus)))] if args.client_cpus else [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCOVIGIL_")}
    env["ONCOVIGIL_LOG_LEVEL"] = "WARNING"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if args.server_pid:
        result["server_cpu_s"] = _cpu_seconds(args.server_pid) - server_before
    return result


async def _seed(url: str, patients: int, truth_dir: Path) -> dict[str, int]:
    from adapters import FhirClient, FhirClientConfig
    from cds.cohort import generate_cohort
    from cds.seed import seed_all

    async with FhirClient(FhirClientConfig(base_url=url, read_timeout_s=300.0)) as client:
        report = await seed_all(client, generate_cohort(patients, COHORT_SEED), truth_dir, data_dir=None)
    return dict(report.server_counts)


@contextlib.contextmanager
def _sandbox(args: argparse.Namespace, work: Path) -> Iterator[str]:
    if args.url:
        yield args.url
        return
    from cds.sandbox import SandboxManager, free_port

    manager = SandboxManager(sandbox_dir=REPO / "docker" / "hapi", state_dir=work / "sandbox", port=free_port(),
                             heap_mb=args.heap_mb, start_timeout_s=600.0, database="memory")
    manager.build()
    seconds = manager.start()
    print(f"sandbox up at {manager.url} in {seconds:.0f} s", file=sys.stderr)
    args.server_pid = manager.status().pid
    if args.server_cpus and args.server_pid:
        # -a: every thread of the JVM, not only its main thread
        subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, sorted(args.server_cpus))),
                        str(args.server_pid)], check=True, capture_output=True)
    try:
        yield manager.url
    finally:
        manager.stop()


def _machine(models: Path) -> dict[str, Any]:
    import onnxruntime

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    cards = {}
    for card in sorted(models.glob("*/model_card.json")):
        data = json.loads(card.read_text())
        cards[card.parent.name] = f"{data.get('name')}@{data.get('version')}"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "python": platform.python_version(),
            "os": platform.platform(), "onnxruntime": onnxruntime.__version__,
            "providers_available": onnxruntime.get_available_providers(), "models": cards}


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| cohort | patients | notes | sync s (notes / orders / summaries) | sync notes/s | extract-only s "
        "| extract notes/s | inference s inside sync | ratio end to end | ratio notes stage | peak RSS sync MB "
        "| RSS after load MB | peak RSS extract MB | server CPU s during sync |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s, e = r["sync"], r["extract"]
        st = s.get("stage_seconds", {})
        split = " / ".join(f"{st.get(k, 0.0):.1f}" for k in ("sync_notes", "sync_orders", "write_summaries"))
        lines.append(
            f"| {r['label']} | {r['patients']} | {s['notes']} | {s['seconds']:.1f} ({split}) | {r['sync_rate']:.2f} "
            f"| {e['seconds']:.1f} | {r['extract_rate']:.2f} | {st.get('extract_in_sync', 0.0):.1f} "
            f"| {r['ratio']:.2f} | {r['notes_stage_ratio']:.2f} "
            f"| {s['peak_rss_mb']:.0f} | {s['rss_after_load_mb']:.0f} | {e['peak_rss_mb']:.0f} "
            f"| {s.get('server_cpu_s', 0.0):.1f} |"
        )
    return "\n".join(lines)


def _report(rows: list[dict[str, Any]], facts: dict[str, Any], args: argparse.Namespace, loads: list[float]) -> str:
    small, large = rows[0], rows[-1]
    growth = large["sync"]["peak_rss_mb"] / small["sync"]["peak_rss_mb"]
    data_growth = (large["sync"]["peak_rss_mb"] - large["sync"]["rss_after_load_mb"]) - (
        small["sync"]["peak_rss_mb"] - small["sync"]["rss_after_load_mb"])
    worst = min(r["ratio"] for r in rows)
    ratios = ", ".join(f"{r['ratio']:.2f}" for r in rows)
    stage_ratios = ", ".join(f"{r['notes_stage_ratio']:.2f}" for r in rows)
    infer_in_sync = " / ".join(f"{r['sync']['stage_seconds'].get('extract_in_sync', 0.0):.1f}" for r in rows)
    infer_alone = " / ".join(f"{r['extract']['seconds']:.1f}" for r in rows)
    overlap = " / ".join(
        f"{r['sync']['stage_seconds'].get('extract_in_sync', 0.0) / r['sync']['stage_seconds']['sync_notes']:.2f}"
        for r in rows if r["sync"]["stage_seconds"].get("sync_notes")
    )
    return "\n".join([
        "# Sync benchmark: I/O hidden behind inference, memory against cohort size",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/sync.py --patients {args.patients} "
        f"--scale {args.scale} --batch {args.batch} --threads {args.threads}{' --no-spin' if args.no_spin else ''}"
        f"{' --pin' if args.pin else ''}`"
        f" against a {'given' if args.given_url else 'dedicated in-memory'}"
        " HAPI sandbox on the same machine.",
        "",
        _table(rows),
        "",
        f"- I/O hiding: sync rate / extractors-alone rate = {ratios} end to end "
        f"(target >= 0.8: {'met' if worst >= 0.8 else 'NOT met'}); over the notes stage alone (pull, extract, "
        f"write AdverseEvents): {stage_ratios}. The orders stage (every "
        "changed MedicationRequest) and the summaries follow the notes and are not overlapped with inference.",
        f"- Where the rest goes: the same inference took {infer_in_sync} s inside the sync against "
        f"{infer_alone} s alone. When inference itself slows down inside the sync, the cores were busy with other "
        f"work (this machine has {facts['cores']}: the HAPI server on the same host answering our transactions, "
        "and the writer building and validating FHIR resources), not waiting on the network; with the FHIR "
        "server on its own host that share goes back to inference. Inference was running during "
        f"{overlap} of the notes stage: the rest is filling and draining the pipeline, the I/O itself is hidden.",
        f"- Memory: peak RSS of the sync at {large['label']} is {growth:.2f}x that at {small['label']} for "
        f"{large['sync']['notes'] / max(small['sync']['notes'], 1):.1f}x the notes; above the loaded models it "
        f"grew by {data_growth:.0f} MB (target: flat).",
        "- `sync` times one SyncJob (pull, extract, write AdverseEvents + Provenance, orders, summaries) from an "
        "empty state database; `extract-only` runs the same models over the same notes in the same batches, "
        "after pulling them (not timed). Model loading is excluded from both.",
        "",
        "## Machine",
        "",
        f"- CPU: {facts['cpu']} ({facts['cores']} logical cores), memory {facts['memory_gb']} GB",
        f"- Load average (1 min) before / after: {loads[0]:.1f} / {loads[1]:.1f} (the machine is shared; "
        "a high load slows both columns alike, the ratio less so)",
        f"- {facts['os']}, Python {facts['python']}, onnxruntime {facts['onnxruntime']} "
        f"(providers available: {', '.join(facts['providers_available'])}; used: {args.providers})",
        f"- Models: {', '.join(f'{k} {v}' for k, v in facts['models'].items()) or 'none'}",
        "- FHIR server: HAPI FHIR JPA 8.8 sandbox (docker/hapi), H2 in memory, same host"
        + (f", pinned to core(s) {sorted(args.server_cpus)}; sync and extract-only on {sorted(args.client_cpus)}"
           if args.server_cpus else ", sharing every core with the sync"),
        "",
        "## Raw results",
        "",
        "```json",
        json.dumps(rows, indent=1, default=str),
        "```",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default=None, help="models directory (default: settings models_dir)")
    parser.add_argument("--providers", default="CPUExecutionProvider")
    parser.add_argument("--url", default=None, help="FHIR base URL of a server to seed (default: own sandbox)")
    parser.add_argument("--heap-mb", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=0, help="ONNX intra-op threads (0: onnxruntime's choice)")
    parser.add_argument("--no-spin", action="store_true", help="idle ONNX threads sleep instead of busy-waiting")
    parser.add_argument("--pin", action="store_true", help="the sandbox on the last core, the children on the others")
    parser.add_argument("--cpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(REPO / "bench" / "RESULTS_sync.md"))
    parser.add_argument("--child", choices=("sync", "extract"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.child:
        run = _child_sync if args.child == "sync" else _child_extract
        print(json.dumps(asyncio.run(run(args)), default=str))
        return 0
    if args.models is None:
        from cds.settings import load_settings

        args.models = str(load_settings().resolved_models_dir)
    models = Path(args.models)
    if not (models / "ade" / "model_card.json").is_file():
        raise SystemExit(f"no ADE model in {models}; run `oncovigil models build` or pass --models")
    args.given_url = args.url is not None
    args.server_pid, args.server_cpus, args.client_cpus = None, None, None
    if args.pin and not args.given_url:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            raise SystemExit("--pin needs at least two cores")
        args.server_cpus, args.client_cpus = {cores[-1]}, set(cores[:-1])
        args.threads = args.threads or len(args.client_cpus)
    loads = [os.getloadavg()[0]]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ov-bench-sync-") as tmp, _sandbox(args, Path(tmp)) as url:
        args.url = url
        for label, patients in (("1x", args.patients), (f"{args.scale}x", args.patients * args.scale)):
            began = time.perf_counter()
            counts = asyncio.run(_seed(url, patients, Path(tmp) / f"truth-{label}"))
            print(f"[{label}] seeded {patients} patients in {time.perf_counter() - began:.0f} s: {counts}",
                  file=sys.stderr)
            sync = _run_child("sync", args, Path(tmp) / f"{label}-sync")
            print(f"[{label}] sync: {sync['notes']} notes in {sync['seconds']:.1f} s ({sync['status']})",
                  file=sys.stderr)
            extract = _run_child("extract", args, Path(tmp) / f"{label}-extract")
            print(f"[{label}] extract-only: {extract['notes']} notes in {extract['seconds']:.1f} s", file=sys.stderr)
            sync_rate = sync["notes"] / sync["seconds"] if sync["seconds"] else 0.0
            extract_rate = extract["notes"] / extract["seconds"] if extract["seconds"] else 0.0
            notes_s = sync["stage_seconds"].get("sync_notes", sync["seconds"])
            rows.append({"label": label, "patients": patients, "server_counts": counts, "sync": sync,
                         "extract": extract, "sync_rate": sync_rate, "extract_rate": extract_rate,
                         "ratio": sync_rate / extract_rate if extract_rate else 0.0,
                         "notes_stage_ratio": extract["seconds"] / notes_s if notes_s else 0.0})
    loads.append(os.getloadavg()[0])
    text = _report(rows, _machine(models), args, loads)
    Path(args.out).write_text(text, encoding="utf-8")
    print(_table(rows))
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
