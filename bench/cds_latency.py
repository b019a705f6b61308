"""Latency and throughput of a running CDS Hooks service at several client concurrencies.

Usage (against an app that is already running):

    python bench/cds_latency.py --url http://127.0.0.1:8000/cds-services/oncovigil-order-sign \
        [--requests bodies.json] [--orders 5] [--patients p1,p2] [--concurrency 1,8,32] [--count 200] \
        [--jwt-key ehr-private.pem --jwt-kid KID --jwt-iss https://ehr.example.org --jwt-alg ES384] \
        [--json-out results.json]

Without ``--requests`` it builds order-sign requests with ``--orders`` draft MedicationRequests and a small
prefetch. Every request gets a fresh ``hookInstance`` (and, with a key, a fresh JWT whose ``aud`` is the URL,
signed before the timed part). It prints a Markdown table; numbers are for comparison side by side, never
for timed assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

DRUGS = (
    ("26225", "Ondansetron"),
    ("3002", "Cyclophosphamide"),
    ("56946", "Paclitaxel"),
    ("4492", "Fluorouracil"),
    ("40048", "Carboplatin"),
    ("3639", "Doxorubicin"),
    ("6851", "Methotrexate"),
    ("42375", "Leucovorin"),
)


@dataclass
class LevelResult:
    clients: int
    requests: int
    ok: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    statuses: dict[str, int] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def order_sign_body(patient_id: str, n_orders: int) -> dict[str, Any]:
    entries = []
    for i in range(n_orders):
        code, display = DRUGS[i % len(DRUGS)]
        entries.append(
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": f"bench-{i + 1}",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "medicationCodeableConcept": {
                        "coding": [
                            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}
                        ],
                        "text": display,
                    },
                }
            }
        )
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/bench",
            "patientId": patient_id,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": entries},
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": patient_id},
            "medications": empty,
            "conditions": empty,
            "allergies": empty,
            "adverseEvents": empty,
        },
    }


def load_bodies(path: Path | None, patients: Sequence[str], n_orders: int) -> list[dict[str, Any]]:
    if path is None:
        return [order_sign_body(p, n_orders) for p in patients]
    data = json.loads(path.read_text(encoding="utf-8"))
    bodies = data if isinstance(data, list) else [data]
    if not bodies or not all(isinstance(b, dict) for b in bodies):
        raise SystemExit(f"{path}: expected a JSON object or a list of objects (CDS Hooks request bodies)")
    return bodies


@dataclass(frozen=True)
class Signer:
    key: Any
    kid: str
    iss: str
    alg: str
    tenant: str | None = None

    def token(self, aud: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        if self.tenant:
            claims["tenant"] = self.tenant
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})


def prepare(
    url: str, bodies: Sequence[dict[str, Any]], count: int, signer: Signer | None
) -> list[tuple[bytes, dict[str, str]]]:
    """Bodies with fresh hookInstances and headers with fresh JWTs, built before timing starts."""
    prepared = []
    for i in range(count):
        body = copy.deepcopy(bodies[i % len(bodies)])
        body["hookInstance"] = str(uuid.uuid4())
        headers = {"content-type": "application/json"}
        if signer is not None:
            headers["authorization"] = f"Bearer {signer.token(url)}"
        prepared.append((json.dumps(body).encode(), headers))
    return prepared


async def run_level(
    client: httpx.AsyncClient, url: str, work: list[tuple[bytes, dict[str, str]]], clients: int
) -> LevelResult:
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def worker() -> None:
        while True:
            try:
                content, headers = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            try:
                response = await client.post(url, content=content, headers=headers)
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - began
    ok = statuses.get("200", 0)
    return LevelResult(
        clients=clients,
        requests=len(work),
        ok=ok,
        errors=len(work) - ok,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        mean_ms=statistics.fmean(latencies) if latencies else math.nan,
        throughput_rps=ok / wall if wall > 0 else math.nan,
        statuses=dict(statuses),
    )


def markdown(url: str, results: Sequence[LevelResult]) -> str:
    lines = [
        f"CDS Hooks latency: `{url}` (latency of 200 answers only)",
        "",
        "| clients | requests | ok | errors | p50 ms | p95 ms | p99 ms | mean ms | req/s | statuses |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
        lines.append(
            f"| {r.clients} | {r.requests} | {r.ok} | {r.errors} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.mean_ms:.1f} | {r.throughput_rps:.1f} | {statuses} |"
        )
    return "\n".join(lines)


async def bench(
    url: str,
    bodies: Sequence[dict[str, Any]],
    levels: Sequence[int],
    count: int,
    signer: Signer | None,
    warmup: int,
    timeout_s: float,
) -> list[LevelResult]:
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        if warmup:
            await run_level(client, url, prepare(url, bodies, warmup, signer), 1)
        results = []
        for clients in levels:
            work = prepare(url, bodies, max(count, clients), signer)
            results.append(await run_level(client, url, work, clients))
        return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="service URL, e.g. http://host/cds-services/oncovigil-order-sign")
    parser.add_argument("--requests", type=Path, help="JSON file: one request body or a list of them")
    parser.add_argument("--orders", type=int, default=5, help="draft orders per built order-sign request")
    parser.add_argument("--patients", default="bench-patient-1", help="comma-separated patient ids for built requests")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--count", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--jwt-key", type=Path, help="PEM private key of the EHR (signs a JWT per request)")
    parser.add_argument("--jwt-kid", help="kid of that key in the JWKS the service trusts")
    parser.add_argument("--jwt-iss", default="https://ehr.example.org")
    parser.add_argument("--jwt-alg", choices=["ES384", "RS384"], default="ES384")
    parser.add_argument("--jwt-tenant")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signer = None
    if args.jwt_key is not None:
        if not args.jwt_kid:
            raise SystemExit("--jwt-kid is required with --jwt-key")
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(args.jwt_key.read_bytes(), password=None)
        signer = Signer(key=key, kid=args.jwt_kid, iss=args.jwt_iss, alg=args.jwt_alg, tenant=args.jwt_tenant)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise SystemExit("--concurrency needs positive integers")
    bodies = load_bodies(args.requests, [p for p in args.patients.split(",") if p], args.orders)
    results = asyncio.run(bench(args.url, bodies, levels, args.count, signer, args.warmup, args.timeout_s))
    print(markdown(args.url, results))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
