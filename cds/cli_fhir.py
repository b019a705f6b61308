"""FHIR server commands: ``fhir check`` (what the server supports) and ``fhir load`` (idempotent NDJSON load)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cds.cli import fail, settings_of


def register(app: typer.Typer) -> None:
    fhir = typer.Typer(help="The FHIR R4 server OncoVigil reads from and writes to.", no_args_is_help=True)
    app.add_typer(fhir, name="fhir")

    @fhir.command("check")
    def check(ctx: typer.Context) -> None:
        """Read the server's CapabilityStatement and say what OncoVigil needs that it lacks."""
        from adapters import AdapterError, FhirClient, check_capabilities
        from cds.runner import fhir_auth, fhir_config

        settings = settings_of(ctx)

        async def run() -> None:
            async with FhirClient(fhir_config(settings), auth=fhir_auth(settings)) as client:
                report = await check_capabilities(client, strict=False)
            typer.echo(f"{settings.fhir_base_url}: {report.software}, FHIR {report.fhir_version}")
            for warning in report.warnings:
                typer.echo(f"  warning: {warning}")
            for missing in report.missing:
                typer.echo(f"  missing: {missing}")
            if not report.ok:
                raise fail("OV-1060: the FHIR server lacks what OncoVigil needs (listed above)", code=1)
            typer.echo("  ok: everything OncoVigil reads and writes is supported")

        try:
            asyncio.run(run())
        except AdapterError as exc:
            raise fail(str(exc), code=2 if exc.user_error else 1) from None

    @fhir.command("load")
    def load(
        ctx: typer.Context,
        directory: Annotated[Path, typer.Argument(help="Folder of bulk-export NDJSON files (<Type>.*.ndjson).")],
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Resources per transaction.")] = 200,
    ) -> None:
        """Load FHIR R4 NDJSON idempotently (PUT Type/id transactions); loading twice changes nothing."""
        from adapters import AdapterError, FhirClient, load_resources, read_ndjson_dir
        from cds.runner import fhir_auth, fhir_config

        settings = settings_of(ctx)

        async def run() -> None:
            async with FhirClient(fhir_config(settings), auth=fhir_auth(settings)) as client:
                report = await load_resources(client, read_ndjson_dir(directory), batch_size=batch_size)
            for rtype, counts in report.by_type.items():
                typer.echo(f"{rtype:22s} sent {counts.sent:6d}  created {counts.created:6d}")
            typer.echo(f"total: sent {report.sent}, created {report.created}")

        try:
            asyncio.run(run())
        except AdapterError as exc:
            raise fail(str(exc), code=2 if exc.user_error else 1) from None
