#!/usr/bin/env python3
"""Smoke check for a running OncoVigil HAPI FHIR sandbox (standard library only).

Usage: python3 docker/hapi/smoke_check.py [BASE_URL]   (default http://127.0.0.1:8080/fhir)

Exercises the server behaviours the OncoVigil FHIR client relies on and exits non-zero on the
first failure. It writes test resources (ids prefixed "smoke-"), so point it at a sandbox only.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

BASE = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/fhir").rstrip("/")
FHIR_JSON = "application/fhir+json"


def call(method: str, url: str, body: dict | None = None, headers: dict | None = None):
    if not url.startswith("http"):
        url = f"{BASE}/{url.lstrip('/')}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", FHIR_JSON)
    if data is not None:
        req.add_header("Content-Type", FHIR_JSON)
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None), dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return err.code, payload, dict(err.headers)


def check(condition: bool, message: str) -> None:
    if not condition:
        print(f"FAIL: {message}")
        sys.exit(1)
    print(f"ok:   {message}")


def main() -> None:
    run = uuid.uuid4().hex[:8]

    status, cap, _ = call("GET", "metadata")
    check(status == 200 and cap.get("fhirVersion") == "4.0.1", "metadata is 200 with fhirVersion 4.0.1")

    pid = f"smoke-{run}"
    status, pat, _ = call("PUT", f"Patient/{pid}", {"resourceType": "Patient", "id": pid,
                                                     "name": [{"family": "Smoke"}]})
    check(status == 201 and pat["id"] == pid, f"PUT Patient/{pid} creates (201)")

    status, body, _ = call("PUT", "Patient/12345", {"resourceType": "Patient", "id": "12345"})
    check(status == 400, "PUT with a purely numeric client id is rejected (400)")

    ident = {"system": "urn:oncovigil:smoke", "value": f"mrn-{run}"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {"resourceType": "Patient", "identifier": [ident]},
            "request": {"method": "POST", "url": "Patient",
                        "ifNoneExist": f"identifier={ident['system']}|{ident['value']}"},
        }],
    }
    status, first, _ = call("POST", "", bundle)
    check(status == 200 and first["entry"][0]["response"]["status"].startswith("201"),
          "transaction with ifNoneExist creates (entry 201)")
    status, second, _ = call("POST", "", bundle)
    check(status == 200 and second["entry"][0]["response"]["status"].startswith("200"),
          "identical transaction creates nothing (entry 200)")
    check(first["entry"][0]["response"]["location"].split("/_history")[0]
          == second["entry"][0]["response"]["location"].split("/_history")[0],
          "both transactions point at the same Patient")

    before = (datetime.now(timezone.utc) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    family = f"Page{run}"
    for i in range(7):
        rid = f"smoke-{run}-{i}"
        status, _, _ = call("PUT", f"Patient/{rid}",
                            {"resourceType": "Patient", "id": rid, "name": [{"family": family}]})
        check(status == 201, f"PUT Patient/{rid} (201)")
    status, body, _ = call("PUT", f"Patient/{pid}-noid", {"resourceType": "Patient"})
    check(status == 400, "PUT without id in the body is rejected (400 HAPI-0419)")
    status, page1, _ = call("GET", f"Patient?family={family}&_count=5")
    links = {link["relation"]: link["url"] for link in page1.get("link", [])}
    check(status == 200 and len(page1.get("entry", [])) == 5 and "next" in links,
          "Patient?_count=5 returns 5 entries and a next link")
    status, page2, _ = call("GET", links["next"])
    check(status == 200 and len(page2.get("entry", [])) == 2, "next link returns the remaining 2")

    status, recent, _ = call("GET", f"Patient?_lastUpdated=gt{before}&family={family}")
    check(status == 200 and recent.get("total", len(recent.get("entry", []))) == 7,
          "_lastUpdated=gt search finds the 7 new patients")

    status, nocache, _ = call("GET", f"Patient?family={family}", headers={"Cache-Control": "no-cache"})
    check(status == 200 and len(nocache.get("entry", [])) == 7, "Cache-Control: no-cache search works")

    ae = {"resourceType": "AdverseEvent", "actuality": "actual",
          "subject": {"reference": f"Patient/{pid}"}, "date": "2026-01-01"}
    status, outcome, _ = call("POST", "AdverseEvent/$validate", ae)
    check(status == 200 and outcome.get("resourceType") == "OperationOutcome",
          "POST AdverseEvent/$validate returns an OperationOutcome")

    payload = b"OncoVigil smoke note \xe2\x9c\x93"
    doc = {"resourceType": "DocumentReference", "status": "current",
           "subject": {"reference": f"Patient/{pid}"},
           "content": [{"attachment": {"contentType": "text/plain",
                                       "data": base64.b64encode(payload).decode()}}]}
    status, created, headers = call("POST", "DocumentReference", doc)
    check(status == 201, "POST DocumentReference with base64 attachment (201)")
    status, fetched, _ = call("GET", f"DocumentReference/{created['id']}")
    data = fetched["content"][0]["attachment"].get("data", "")
    check(status == 200 and base64.b64decode(data) == payload, "attachment data round-trips")

    print("all smoke checks passed")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.1f} s)")
