"""``oncovigil sandbox start|stop|status|seed`` and ``oncovigil cohort generate``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from adapters import FhirClient, FhirClientConfig
from cds.cli import fail, settings_of
from cds.cohort import Cohort, check_layout, generate_cohort, write_ndjson, write_truth
from cds.sandbox import manager_from_settings
from cds.seed import SeedReport, seed_all
from cds.settings import Settings

PortOption = Annotated[
    int | None, typer.Option("--port", min=1, max=65535, help="TCP port (default: settings sandbox_port).")
]
PatientsOption = Annotated[
    int | None,
    typer.Option("--patients", min=1, max=9999, help="Synthetic patients (default: cohort_patients)."),
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Random seed (default: cohort_seed).")]


def register(app: typer.Typer) -> None:
    sandbox = typer.Typer(help="The local HAPI FHIR R4 sandbox (docker/hapi).", no_args_is_help=True)
    cohort = typer.Typer(help="The synthetic oncology cohort and its ground truth.", no_args_is_help=True)
    app.add_typer(sandbox, name="sandbox")
    app.add_typer(cohort, name="cohort")

    @sandbox.command("start")
    def start(
        ctx: typer.Context,
        port: PortOption = None,
        database: Annotated[
            str | None,
            typer.Option("--database", help="memory or file (default: settings sandbox_database)."),
        ] = None,
        build: Annotated[bool, typer.Option("--build/--no-build", help="Build the jar first if it is stale.")] = True,
    ) -> None:
        """Build the sandbox if needed, start it in the background and wait until it answers."""
        if database not in (None, "memory", "file"):
            raise fail(f"OV-0030: --database must be memory or file, got {database!r}")
        db: Literal["memory", "file"] | None = "memory" if database == "memory" else "file" if database else None
        manager = manager_from_settings(settings_of(ctx), port=port, database=db)
        current = manager.status()
        if current.running:
            typer.echo(f"sandbox already running at {current.url} (pid {current.pid})")
            return
        if build and manager.needs_build():
            typer.echo(f"building {manager.jar.name} (mvn package in {manager.sandbox_dir}) ...")
            manager.build()
        seconds = manager.start()
        state = manager.status()
        typer.echo(f"sandbox ready at {manager.url} in {seconds:.1f} s (pid {state.pid})")

    @sandbox.command("stop")
    def stop(ctx: typer.Context) -> None:
        """Stop the sandbox started by ``sandbox start`` (by its recorded pid)."""
        manager = manager_from_settings(settings_of(ctx))
        typer.echo("sandbox stopped" if manager.stop() else "sandbox was not running")

    @sandbox.command("status")
    def status(
        ctx: typer.Context,
        as_json: Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")] = False,
    ) -> None:
        """Is the sandbox running? pid, port, URL, uptime and resident memory."""
        state = manager_from_settings(settings_of(ctx)).status()
        if as_json:
            typer.echo(json.dumps(state.__dict__))
        elif state.running:
            typer.echo(
                f"running at {state.url} (pid {state.pid}, up {state.uptime_s or 0:.0f} s, "
                f"RSS {state.rss_mb or 0:.0f} MB)"
            )
        else:
            stale = f" (stale pid file for pid {state.pid})" if state.stale_pid_file else ""
            typer.echo(f"not running{stale}")

    @sandbox.command("seed")
    def seed(
        ctx: typer.Context,
        patients: PatientsOption = None,
        seed: SeedOption = None,
        truth_dir: Annotated[
            Path | None,
            typer.Option("--truth-dir", help="Where the ground truth goes (default: {home}/cohort)."),
        ] = None,
        url: Annotated[str | None, typer.Option("--url", help="FHIR base URL (default: fhir_base_url).")] = None,
        synthea: Annotated[
            bool,
            typer.Option("--synthea/--no-synthea", help="Also load {data_dir}/synthea_bulk_10 if present."),
        ] = True,
    ) -> None:
        """Load the Synthea sample (if present) and the synthetic cohort; safe to run twice."""
        settings = settings_of(ctx)
        cohort = generate_cohort(patients or settings.cohort_patients, settings.cohort_seed if seed is None else seed)
        report = asyncio.run(
            _seed(
                settings,
                url or settings.fhir_base_url,
                cohort_obj=cohort,
                truth_dir=truth_dir or settings.home / "cohort",
                synthea=synthea,
            )
        )
        _print_report(report)

    @cohort.command("generate")
    def generate(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", help="Directory for the truth files and fhir/*.ndjson.")],
        patients: PatientsOption = None,
        seed: SeedOption = None,
    ) -> None:
        """Write the cohort's ground truth and its FHIR resources as NDJSON, without a server."""
        settings = settings_of(ctx)
        made = generate_cohort(patients or settings.cohort_patients, settings.cohort_seed if seed is None else seed)
        check_layout(made, out)
        write_truth(made, out)
        files = write_ndjson(made, out / "fhir")
        counts = ", ".join(f"{k} {v}" for k, v in made.counts().items())
        typer.echo(f"cohort seed {made.seed}, {made.patients} patients: {counts}")
        typer.echo(
            f"truth: {len(made.notes)} notes, {len(made.overprescriptions)} overprescriptions, "
            f"{len(made.visits)} visits in {out}; {len(files)} NDJSON files in {out / 'fhir'}"
        )


async def _seed(settings: Settings, url: str, *, cohort_obj: Cohort, truth_dir: Path, synthea: bool) -> SeedReport:
    config = FhirClientConfig(
        base_url=url,
        connect_timeout_s=settings.fhir_connect_timeout_s,
        read_timeout_s=max(settings.fhir_read_timeout_s, 120.0),  # a 200-entry transaction can take a while
        max_retries=settings.fhir_max_retries,
    )
    async with FhirClient(config) as client:
        return await seed_all(client, cohort_obj, truth_dir, data_dir=settings.data_dir if synthea else None)


def _print_report(report: SeedReport) -> None:
    if report.synthea is None:
        typer.echo(f"note: {report.synthea_note}")
    else:
        typer.echo(f"synthea: sent {sum(report.synthea.sent.values())}, created {report.synthea.total_created}")
    typer.echo(f"cohort: sent {sum(report.cohort.sent.values())}, created {report.cohort.total_created}")
    typer.echo(f"truth written to {report.truth_dir}")
    width = max(len(k) for k in report.server_counts) if report.server_counts else 0
    for kind, n in report.server_counts.items():
        created = report.cohort.created.get(kind, 0) + (report.synthea.created.get(kind, 0) if report.synthea else 0)
        typer.echo(f"  {kind:<{width}}  {n:>6} on server  (+{created} new)")
