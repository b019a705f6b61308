"""Operations commands: ``sync``, ``serve``, ``runs``, ``summaries``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, date, datetime
from typing import Annotated

import typer

from cds.cli import fail, settings_of
from cds.errors import ConfigError, OncoVigilError
from cds.state import StateStore

MAX_RUNS_LISTED = 100_000


def _progress_printer(enabled: bool) -> tuple[object, object]:
    """A small terminal progress line (counts per stage); periodic log lines do the job elsewhere."""
    seen: dict[str, int] = {}

    def hook(stage: str, n: int) -> None:
        seen[stage] = seen.get(stage, 0) + n
        if enabled:
            text = "  ".join(f"{k}: {v}" for k, v in seen.items())
            sys.stderr.write(f"\r[sync] {text}")
            sys.stderr.flush()

    def done() -> None:
        if enabled and seen:
            sys.stderr.write("\n")

    return hook, done


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"OV-0007: --since {value!r} is not an ISO date or datetime (e.g. 2024-01-01)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    @app.command("sync")
    def sync(
        ctx: typer.Context,
        since: Annotated[
            str | None, typer.Option("--since", help="Backfill from this date instead of the watermark.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
        engine: Annotated[str, typer.Option("--engine", help="local (one process, the default) or ray "
                                            "(notes stage on a Ray cluster; needs oncovigil\\[ray]).")] = "local",
        ray_address: Annotated[str | None, typer.Option(
            "--ray-address", help="Ray cluster to join (ray://HOST:10001, auto); default ONCOVIGIL_RAY_ADDRESS, "
            "else a local cluster.")] = None,
    ) -> None:
        """Run the nightly pharmacovigilance sync once (pull, extract, write back, advance the watermark)."""
        from cds.assessor import build_assessor_hook
        from cds.runner import run_sync_once

        if engine not in ("local", "ray"):
            raise fail(f"OV-0115: --engine {engine!r} is not one of local, ray")
        settings = settings_of(ctx)
        start = _parse_since(since)
        if engine == "ray":
            from cds.sync_ray import check_address, import_ray

            try:
                import_ray()  # before anything starts: a missing Ray is a usage error
                address = ray_address or settings.ray_address
                if address:
                    check_address(address)  # a malformed one is a usage error; an unreachable one fails later
            except OncoVigilError as exc:
                raise fail(str(exc)) from None
        store = StateStore(str(settings.state_db_url))
        hook, done = _progress_printer(sys.stderr.isatty() and not as_json)
        try:
            if engine == "ray":
                from cds.sync_ray import run_sync_ray_once

                report = asyncio.run(run_sync_ray_once(
                    settings, store, since=start, progress=hook,  # type: ignore[arg-type]
                    on_orders=build_assessor_hook(settings, store), address=ray_address,
                ))
            else:
                report = asyncio.run(run_sync_once(
                    settings, store, since=start, progress=hook,  # type: ignore[arg-type]
                    on_orders=build_assessor_hook(settings, store),
                ))
        except OncoVigilError as exc:
            raise fail(str(exc), code=2 if isinstance(exc, ConfigError) else 1) from None
        finally:
            done()  # type: ignore[operator]
            store.close()
        if as_json:
            typer.echo(json.dumps({"run_id": report.run_id, "status": report.status, "counts": report.counts,
                                   "errors": report.errors[:20]}, default=str))
            return
        typer.echo(f"sync run {report.run_id}: {report.status}")
        for key, value in sorted(report.counts.items()):
            typer.echo(f"  {key}: {value}")
        for err in report.errors[:10]:
            typer.echo(f"  error: {err}")

    @app.command("runs")
    def runs(
        ctx: typer.Context,
        # bounded: SQLite's LIMIT is a 64-bit integer, and nobody reads more runs than this on a terminal
        limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_RUNS_LISTED, help="How many runs to list.")]
        = 10,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """List the latest sync runs (start, end, status, counts, errors)."""
        store = StateStore(str(settings_of(ctx).state_db_url))
        records = store.runs(limit)
        store.close()
        if as_json:
            typer.echo(json.dumps([r.__dict__ for r in records], default=str))
            return
        if not records:
            typer.echo("no runs yet")
        for r in records:
            took = f"{(r.ended_at - r.started_at).total_seconds():.1f} s" if r.ended_at else "running"
            typer.echo(f"#{r.id} {r.kind} {r.started_at:%Y-%m-%d %H:%M:%S} {r.status} ({took}) "
                       f"notes={r.counts.get('notes_processed', 0)} AE+={r.counts.get('AdverseEvent_created', 0)} "
                       f"errors={len(r.errors)}")

    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: Annotated[str | None, typer.Option("--host")] = None,
        port: Annotated[int | None, typer.Option("--port", min=1, max=65535,
                                                 help="TCP port (default: settings serve_port).")] = None,
        scheduler: Annotated[bool, typer.Option("--scheduler/--no-scheduler",
                                                help="Run the nightly sync scheduler too.")] = True,
        scheduler_only: Annotated[bool, typer.Option("--scheduler-only",
                                                     help="Run only the scheduler, no HTTP API.")] = False,
    ) -> None:
        """Serve the CDS Hooks API (and the nightly scheduler) until interrupted."""
        import uvicorn

        from cds.app import create_app
        from cds.assessor import build_assessor

        settings = settings_of(ctx)
        if scheduler_only:
            import os
            import signal
            import socket
            import threading

            from cds.scheduling import start_scheduler

            store = StateStore(str(settings.state_db_url))
            sched = start_scheduler(settings, store, f"{socket.gethostname()}:{os.getpid()}")
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            typer.echo(f"scheduler running (cron {settings.sync_cron!r}); Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
            sched.shutdown(wait=False)
            return
        store = StateStore(str(settings.state_db_url))
        app_ = create_app(settings, store=store, assessor=build_assessor(settings, store), run_scheduler=scheduler)
        uvicorn.run(app_, host=host or settings.serve_host, port=port or settings.serve_port, log_config=None)

    @app.command("summaries")
    def summaries(
        ctx: typer.Context,
        drug: Annotated[str, typer.Option("--drug", help="Ingredient name or RxNorm code, e.g. cisplatin.")],
    ) -> None:
        """Print the grouped ADE summary of one drug: what the sync published, else built from the findings."""
        from cds.findings_map import identify_drug
        from cds.grouping import AdeObservation, group_by_drug
        from cds.model_tasks import runtime_config
        from cds.summarise import GROUP_KIND, build_guarded_summariser, summarise_records

        settings = settings_of(ctx)
        identity = identify_drug(drug)
        rxnorm = drug if drug.isdigit() else identity.rxnorm
        if rxnorm is None:
            raise fail(f"OV-0008: unknown drug {drug!r}; give an ingredient name or an RxNorm code")
        store = StateStore(str(settings.state_db_url))
        stored = store.findings(kind=GROUP_KIND, drug_rxnorm=rxnorm)
        rows = [] if stored else store.findings(kind="ade", drug_rxnorm=rxnorm)
        store.close()
        if stored:  # the grouped records the last sync stored, with the summary it published
            for row in sorted(stored, key=lambda r: r.key):
                typer.echo(str(row.payload["markdown"]))
            return
        obs = [
            AdeObservation(r.patient_id, r.note_id, rxnorm, str(r.payload.get("drug_display") or drug),
                           str(r.payload["ctcae_term"]), r.payload.get("grade"),
                           date.fromisoformat(r.payload["date"]), evidence=str(r.payload.get("event", "")))
            for r in rows if not r.payload.get("negated")
        ]
        if not obs:
            typer.echo(f"no adverse events recorded for {drug} (RxNorm {rxnorm}); run `oncovigil sync` first")
            return
        summariser = build_guarded_summariser(settings.resolved_models_dir, runtime_config(settings))
        for markdown in summarise_records(summariser, group_by_drug(obs, settings.summary_window_days)):
            typer.echo(markdown)
