"""``oncovigil demo``: the main job on the embedded default, start to finish, then stop what it started."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import typer

from cds.cli import fail, settings_of
from cds.errors import OncoVigilError
from cds.model_tasks import discover
from cds.settings import Settings


def _pick_patient(truth_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    """A cohort patient with a recorded serious ADE, and the drafts to order: that drug (+ an overprescription)."""
    best: tuple[str, list[tuple[str, str]]] | None = None
    over: dict[str, tuple[str, str]] = {}
    # "\n" only: the truth files keep non-ASCII raw, and splitlines() would break a note at U+2028
    for line in (truth_dir / "overprescriptions.jsonl").read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        o = json.loads(line)
        over.setdefault(o["patient_id"], (o["rxnorm"], o["drug"]))
    for line in (truth_dir / "notes.jsonl").read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        note = json.loads(line)
        for ade in note["ades"]:
            if ade["negated"] or not ade.get("rxnorm") or (ade.get("grade") or 0) < 3:
                continue
            drafts = [(ade["rxnorm"], ade["drug"])]
            pid = note["patient_id"]
            if pid in over and over[pid][0] != ade["rxnorm"]:
                drafts.append(over[pid])
                return pid, drafts
            best = best or (pid, drafts)
    if best is None:
        raise fail("OV-0041: the cohort has no patient with a serious ADE; seed with more patients", code=1)
    return best


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call_cds(settings: Settings, truth_dir: Path) -> dict[str, Any]:
    import uvicorn

    from cds.app import create_app
    from cds.assessor import build_assessor
    from cds.demo_ehr import DemoEhr, draft_medication_request, order_sign_body

    ehr = DemoEhr()
    issuers = settings.home / "trusted_issuers.json"
    issuers.write_text(json.dumps(ehr.trusted_issuers()))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    service_settings = settings.model_copy(update={
        "cds_trusted_issuers_file": issuers, "cds_require_jwt": True, "cds_public_base_url": base,
    })
    app = create_app(service_settings, assessor=build_assessor(service_settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        patient_id, drafts = _pick_patient(truth_dir)
        resources = [draft_medication_request(f"draft-{i + 1}", patient_id, rx, name)
                     for i, (rx, name) in enumerate(drafts)]
        url = f"{base}/cds-services/oncovigil-order-sign"
        body = order_sign_body(patient_id, resources, settings.fhir_base_url)
        started = time.perf_counter()
        response = httpx.post(url, json=body, headers={"Authorization": ehr.authorization(url)}, timeout=30)
        took_ms = (time.perf_counter() - started) * 1000
        return {"status": response.status_code, "ms": took_ms, "patient": patient_id,
                "drafts": [name for _, name in drafts], "body": response.json()}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        patients: int = typer.Option(None, "--patients", help="Cohort size (default: settings)."),
        keep_running: bool = typer.Option(False, "--keep-running", help="Leave the sandbox running afterwards."),
    ) -> None:
        """Start the sandbox, seed it, run one sync, send one order-sign call and print the cards, then stop."""
        from cds.assessor import build_assessor_hook
        from cds.cli_sandbox import _seed  # the same code path as `oncovigil sandbox seed`
        from cds.cohort import generate_cohort
        from cds.runner import run_sync_once
        from cds.sandbox import manager_from_settings
        from cds.state import StateStore

        base_settings = settings_of(ctx)
        home = base_settings.home / "demo"
        shutil.rmtree(home, ignore_errors=True)  # a fresh in-memory sandbox needs fresh watermarks
        home.mkdir(parents=True)
        settings = base_settings.model_copy(update={
            "home": home, "state_db_url": f"sqlite:///{home / 'state.db'}",
            "models_dir": base_settings.resolved_models_dir,
        })
        # the installation's sandbox state folder, so `oncovigil sandbox status|stop` see a demo sandbox left running
        manager = manager_from_settings(base_settings, database="memory")
        started_here = False
        try:
            status = manager.status()
            if status.running:
                raise fail(f"OV-0024: a sandbox is already running at {status.url}; stop it first "
                           "(`oncovigil sandbox stop`) so the demo starts from an empty server")
            if manager.needs_build():
                typer.echo("[1/5] building the HAPI sandbox (mvn package) ...")
                manager.build()
            typer.echo("[1/5] starting the HAPI FHIR sandbox ...")
            seconds = manager.start()
            started_here = True
            typer.echo(f"      ready at {manager.url} in {seconds:.1f} s")
            settings = settings.model_copy(update={"fhir_base_url": manager.url})
            typer.echo("[2/5] seeding Synthea sample + synthetic oncology cohort ...")
            cohort = generate_cohort(patients or settings.cohort_patients, settings.cohort_seed)
            truth_dir = home / "cohort"
            report = asyncio.run(_seed(settings, manager.url, cohort_obj=cohort, truth_dir=truth_dir, synthea=True))
            typer.echo(f"      created {report.created} resources; server now holds "
                       + ", ".join(f"{k} {v}" for k, v in report.server_counts.items()))
            typer.echo("[3/5] models: " + ", ".join(
                f"{t} {'ok' if (settings.resolved_models_dir / t / 'model_card.json').is_file() else 'missing'}"
                for t in discover()))
            typer.echo("[4/5] nightly sync (pull notes and orders, extract, write back) ...")
            store = StateStore(str(settings.state_db_url))
            t0 = time.perf_counter()
            sync_report = asyncio.run(run_sync_once(settings, store, on_orders=build_assessor_hook(settings, store)))
            store.close()
            typer.echo(f"      run {sync_report.run_id} {sync_report.status} in {time.perf_counter() - t0:.1f} s: "
                       + ", ".join(f"{k}={v}" for k, v in sorted(sync_report.counts.items()) if isinstance(v, int)))
            typer.echo("[5/5] CDS Hooks order-sign call (ES384-signed JWT) ...")
            answer = _call_cds(settings, truth_dir)
            typer.echo(f"      patient {answer['patient']}, drafts {answer['drafts']}: HTTP {answer['status']} "
                       f"in {answer['ms']:.0f} ms")
            typer.echo(json.dumps(answer["body"], indent=2))
        except OncoVigilError as exc:
            raise fail(str(exc), code=1) from None
        finally:
            if started_here and not keep_running:
                manager.stop()
                typer.echo("sandbox stopped")
            elif started_here:
                typer.echo(f"sandbox left running at {manager.url} (in memory); `oncovigil sandbox stop` stops it")
