"""The one FHIR R4 client: one httpx connection pool, explicit timeouts, safe retries, typed errors.

Everything OncoVigil says to or hears from a FHIR server goes through :class:`FhirClient`. Tests inject
faults through ``transport=`` (httpx.MockTransport or a wrapper around a real transport), never by patching.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import httpx

from adapters.bundle import matches, next_link
from adapters.config import FhirClientConfig
from adapters.errors import FhirProtocolError
from adapters.failures import origin_of, status_error, transport_error, url_path
from adapters.outcome import ValidationResult, parse_outcome
from adapters.retry import Backoff, may_retry_error, may_retry_status, retry_after_s

log = logging.getLogger(__name__)

Resource = dict[str, Any]
ParamValue = str | int | float | Sequence[str]
Params = Mapping[str, ParamValue] | Sequence[tuple[str, str]]
Sleep = Callable[[float], Awaitable[None]]

_FHIR_JSON = "application/fhir+json"
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def query_pairs(params: Params | None) -> list[tuple[str, str]]:
    """Search parameters as ordered pairs; a sequence value repeats the parameter (``_include``, dates)."""
    if params is None:
        return []
    if isinstance(params, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, str | int | float):
                pairs.append((key, str(value)))
            else:
                pairs.extend((key, str(v)) for v in value)
        return pairs
    return [(str(k), str(v)) for k, v in params]


def bundle_is_idempotent(bundle: Resource) -> bool:
    """True when replaying the whole transaction cannot create anything twice.

    That holds when every entry is a read, a PUT (update-as-create or conditional update), a DELETE, or a
    POST guarded by ``ifNoneExist``; a bare POST would create a second copy.
    """
    for entry in bundle.get("entry") or []:
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        if method in _IDEMPOTENT_METHODS:
            continue
        if method == "POST" and request.get("ifNoneExist"):
            continue
        return False
    return True


class FhirClient:
    """Async FHIR R4 client; use as ``async with FhirClient(config) as fhir: ...``."""

    def __init__(
        self,
        config: FhirClientConfig,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff = Backoff(config.backoff_base_s, config.backoff_max_s)
        self._http = httpx.AsyncClient(
            base_url=config.base + "/",
            auth=auth,
            transport=transport,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.write_timeout_s,
                pool=config.pool_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
            headers={"Accept": _FHIR_JSON, "User-Agent": config.user_agent},
            follow_redirects=False,
        )

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- reads ---------------------------------------------------------------------------------------

    async def capabilities(self) -> Resource:
        """The server's CapabilityStatement (``GET [base]/metadata``)."""
        statement = await self._get_json("metadata")
        if statement.get("resourceType") != "CapabilityStatement":
            raise FhirProtocolError(
                "OV-1051",
                f"{self.config.base}/metadata did not return a CapabilityStatement; check that the base URL "
                "points at the FHIR endpoint (for HAPI it ends in /fhir)",
            )
        return statement

    async def read(self, resource_type: str, resource_id: str) -> Resource:
        resource = await self._get_json(f"{resource_type}/{resource_id}")
        if resource.get("resourceType") != resource_type:
            raise FhirProtocolError(
                "OV-1051", f"reading {resource_type}/{resource_id} returned a {resource.get('resourceType')}"
            )
        return resource

    async def search_bundles(
        self,
        resource_type: str,
        params: Params | None = None,
        *,
        fresh: bool = True,
        page_size: int | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[Resource]:
        """Search-set pages, following ``Bundle.link[next]`` exactly as the server gave it.

        ``fresh`` sends ``Cache-Control: no-cache`` on the first request so that HAPI runs the search
        instead of answering from its search cache (which would miss what was just written).
        """
        pairs = query_pairs(params)
        if not any(key == "_count" for key, _ in pairs):
            pairs.append(("_count", str(page_size or self.config.page_size)))
        headers = {"Cache-Control": "no-cache"} if fresh else None
        response = await self._request("GET", resource_type, params=pairs, headers=headers, idempotent=True)
        seen: set[str] = set()
        pages = 0
        while True:
            bundle = self._json(response)
            if bundle.get("resourceType") != "Bundle":
                raise FhirProtocolError(
                    "OV-1051", f"search {resource_type} returned a {bundle.get('resourceType')}, not a Bundle"
                )
            pages += 1
            yield bundle
            link = next_link(bundle)
            if link is None or (max_pages is not None and pages >= max_pages):
                return
            url = self._checked_link(link, seen)
            response = await self._request("GET", url, idempotent=True)

    async def search(
        self,
        resource_type: str,
        params: Params | None = None,
        *,
        fresh: bool = True,
        page_size: int | None = None,
    ) -> AsyncIterator[Resource]:
        """The matched resources of a search, page after page (``_include`` results left out)."""
        async for bundle in self.search_bundles(resource_type, params, fresh=fresh, page_size=page_size):
            for resource in matches(bundle):
                yield resource

    async def count(self, resource_type: str, params: Params | None = None) -> int:
        """How many resources match (``_summary=count``), computed now rather than taken from a cache."""
        pairs = [*query_pairs(params), ("_summary", "count"), ("_total", "accurate")]
        response = await self._request(
            "GET", resource_type, params=pairs, headers={"Cache-Control": "no-cache"}, idempotent=True
        )
        bundle = self._json(response)
        total = bundle.get("total")
        if not isinstance(total, int):
            raise FhirProtocolError("OV-1053", f"count of {resource_type} came back without Bundle.total")
        return total

    async def fetch(self, url: str, *, accept: str = _FHIR_JSON) -> httpx.Response:
        """GET a URL on this server (relative to the base) or on a trusted origin, with our credentials."""
        target = urljoin(self.config.base + "/", url)
        origin = origin_of(target)
        trusted = {o.lower().rstrip("/") for o in self.config.trusted_attachment_origins}
        if origin != self.config.origin and origin not in trusted:
            raise FhirProtocolError(
                "OV-1054",
                f"refusing to send credentials to {origin}; add it to the trusted attachment origins if it is yours",
            )
        return await self._request("GET", target, headers={"Accept": accept}, idempotent=True)

    # -- writes --------------------------------------------------------------------------------------

    async def transaction(self, bundle: Resource, *, idempotent: bool | None = None) -> Resource:
        """POST a transaction Bundle; retried on transient failures only when replaying it is harmless."""
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") not in ("transaction", "batch"):
            raise FhirProtocolError("OV-1055", "transaction() needs a Bundle of type transaction or batch")
        safe = bundle_is_idempotent(bundle) if idempotent is None else idempotent
        response = await self._request("POST", self.config.base, json_body=bundle, idempotent=safe)
        result = self._json(response)
        if result.get("resourceType") != "Bundle":
            raise FhirProtocolError("OV-1051", f"transaction answer is a {result.get('resourceType')}, not a Bundle")
        return result

    async def update(self, resource: Resource) -> Resource:
        """PUT a resource at its id (update-as-create); idempotent, so retried on transient failures."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not rtype or not rid:
            raise FhirProtocolError("OV-1055", "update() needs a resource with resourceType and id")
        response = await self._request("PUT", f"{rtype}/{rid}", json_body=resource, idempotent=True)
        return self._json(response)

    async def validate(self, resource: Resource, *, profile: str | None = None) -> ValidationResult:
        """Ask the server to validate a resource (``POST [type]/$validate``): a verdict, not an exception."""
        rtype = resource.get("resourceType")
        if not rtype:
            raise FhirProtocolError("OV-1055", "validate() needs a resource with resourceType")
        params = [("profile", profile)] if profile else None
        response = await self._request(
            "POST",
            f"{rtype}/$validate",
            params=params,
            json_body=resource,
            idempotent=True,
            accept={400, 412, 422},
        )
        outcome = self._json(response)
        return ValidationResult(issues=tuple(parse_outcome(outcome)), outcome=outcome)

    # -- plumbing ------------------------------------------------------------------------------------

    def _checked_link(self, link: str, seen: set[str]) -> str:
        url = urljoin(self.config.base + "/", link)
        if origin_of(url) != self.config.origin:
            raise FhirProtocolError(
                "OV-1052",
                f"the server's next link points to {origin_of(url)}, not {self.config.origin}; refusing to "
                "send credentials there. Configure the server's public address (HAPI: server_address) "
                "to match the base URL",
            )
        if url in seen:
            raise FhirProtocolError("OV-1056", "the server's next link repeats an earlier page; stopping the search")
        seen.add(url)
        return url

    async def _get_json(self, url: str) -> Resource:
        return self._json(await self._request("GET", url, idempotent=True))

    def _json(self, response: httpx.Response) -> Resource:
        try:
            body = response.json()
        except ValueError as exc:
            raise FhirProtocolError(
                "OV-1050",
                f"{response.request.method} {url_path(response.request.url)} answered HTTP "
                f"{response.status_code} with {response.headers.get('content-type', 'no content type')}, "
                "not JSON; check the base URL",
            ) from exc
        if not isinstance(body, dict):
            raise FhirProtocolError("OV-1050", f"{url_path(response.request.url)} answered JSON that is not an object")
        return body

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Iterable[tuple[str, str]] | None = None,
        json_body: Resource | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        accept: Iterable[int] = (),
    ) -> httpx.Response:
        ok_statuses = set(accept)
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method,
                    url,
                    params=list(params) if params is not None else None,
                    json=json_body,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if attempt < self.config.max_retries and may_retry_error(exc, idempotent=idempotent):
                    await self._pause(method, url, attempt, None, type(exc).__name__)
                    attempt += 1
                    continue
                raise transport_error(method, url, exc, attempt + 1, idempotent) from exc
            if response.is_success or response.status_code in ok_statuses:
                return response
            status = response.status_code
            if may_retry_status(status, idempotent=idempotent) and attempt < self.config.max_retries:
                wait = retry_after_s(response.headers.get("Retry-After"))
                if wait is not None and wait > self.config.max_retry_after_s:
                    raise status_error(
                        method,
                        response,
                        f"The server asks us to wait {wait:.0f} s, over the "
                        f"{self.config.max_retry_after_s:.0f} s limit; try again later",
                    )
                await self._pause(method, url, attempt, wait, f"HTTP {status}")
                attempt += 1
                continue
            raise status_error(method, response, None, attempts=attempt + 1)

    async def _pause(self, method: str, url: str, attempt: int, retry_after: float | None, why: str) -> None:
        delay = retry_after if retry_after is not None else self._backoff.delay(attempt, self._rng)
        log.warning(
            "retrying FHIR request",
            extra={
                "method": method,
                "path": url_path(url),
                "why": why,
                "attempt": attempt + 1,
                "delay_s": round(delay, 3),
            },
        )
        await self._sleep(delay)
