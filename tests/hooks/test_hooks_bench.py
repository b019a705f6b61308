"""Smoke test of bench/cds_latency.py against the live hooks app, signing with the mini-EHR's key."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import serialization
from ehr import MiniEhr
from fakes import FakeDecisions

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cds_latency.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cds_latency", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_percentile_nearest_rank() -> None:
    bench = load_bench()
    assert bench.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert bench.percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert bench.percentile([], 50) != bench.percentile([], 50)  # NaN


def test_bench_runs_signed_order_sign_requests(
    live: str, ehr: MiniEhr, fake: FakeDecisions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "ehr.pem"
    pem.write_bytes(
        ehr.ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out = tmp_path / "results.json"
    url = f"{live}/cds-services/oncovigil-order-sign"
    argv = ["--url", url, "--count", "12", "--concurrency", "1,4", "--warmup", "2"]
    argv += ["--jwt-key", str(pem), "--jwt-kid", ehr.ec_kid, "--jwt-iss", ehr.iss, "--json-out", str(out)]
    assert load_bench().main(argv) == 0
    table = capsys.readouterr().out
    assert "| clients | requests | ok |" in table
    results = json.loads(out.read_text())
    assert [(r["clients"], r["requests"], r["ok"]) for r in results] == [(1, 12, 12), (4, 12, 12)]
    assert results[1]["p50_ms"] <= results[1]["p99_ms"]
    # Every request was a fresh hook call with five draft orders.
    calls = fake.calls
    assert len({c.hook_instance for c in calls}) == len(calls) == 26
    assert all(len(c.context.draftOrders["entry"]) == 5 for c in calls)  # type: ignore[union-attr]


def test_bench_without_a_key_reports_the_401s(live: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{live}/cds-services/oncovigil-order-sign"
    assert load_bench().main(["--url", url, "--count", "3", "--concurrency", "1", "--warmup", "0"]) == 1
    assert "401: 3" in capsys.readouterr().out
