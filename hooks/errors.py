"""Errors of the CDS Hooks protocol layer, each with a stable ``OV-3xxx`` code and the HTTP status it maps to.

The decision service (implemented in ``cds``) raises :class:`PrefetchUnavailable` or :class:`BadHookRequest`;
the router turns every error of this tree into a JSON answer with the code, so a client never sees a bare 500.

Exception tree::

    HooksError                  OV-3000        base; ``http_status`` is what the router answers
    ├── HooksConfigError        OV-3001..3019  service definitions, JWT trust or app settings that cannot work
    ├── BadHookRequest          OV-3020..3029  400: malformed JSON, schema violation, hook/service mismatch
    ├── UnknownService          OV-3030        404: no service with that id
    ├── PayloadTooLarge         OV-3031        413: body over ``HooksConfig.max_body_bytes``
    ├── PrefetchUnavailable     OV-3040        412: required data neither prefetched nor fetchable
    ├── AuthenticationFailed    OV-3050        401: JWT missing or not trusted (reason only in the log)
    ├── DecisionTimeout         OV-3060        503: the decision service overran its deadline
    └── CardInvariantError      OV-3070        500: our card breaks the spec (our bug, never sent)

``OV-3099`` marks any other exception escaping the decision service (500, logged with its type).
"""

from __future__ import annotations

from collections.abc import Sequence


class HooksError(Exception):
    """Base of every error ``hooks`` raises; ``code`` is stable across releases."""

    code: str = "OV-3000"
    http_status: int = 500
    user_error: bool = False

    def __init__(self, message: str, *, code: str | None = None, errors: list[dict[str, str]] | None = None) -> None:
        if code is not None:
            self.code = code
        self.detail = message
        self.errors = errors or []
        super().__init__(f"{self.code}: {message}")


class HooksConfigError(HooksError):
    """The hooks part was configured in a way that cannot work safely; fix the configuration."""

    code = "OV-3001"
    user_error = True


class BadHookRequest(HooksError):
    """The CDS client sent a request we cannot act on; the client must fix it (400)."""

    code = "OV-3020"
    http_status = 400
    user_error = True


class UnknownService(HooksError):
    """No CDS service has the requested id (404)."""

    code = "OV-3030"
    http_status = 404
    user_error = True


class PayloadTooLarge(HooksError):
    """The request body exceeds the configured limit (413)."""

    code = "OV-3031"
    http_status = 413
    user_error = True


class PrefetchUnavailable(HooksError):
    """Data the service needs was not prefetched and could not be fetched from ``fhirServer`` (412).

    ``missing`` names the prefetch keys (or other data items) that could not be obtained; it goes into the
    OperationOutcome so the EHR can tell what to send next time.
    """

    code = "OV-3040"
    http_status = 412

    def __init__(self, missing: Sequence[str], message: str | None = None) -> None:
        self.missing = tuple(missing)
        text = message or (
            f"required data {', '.join(self.missing) or '(unspecified)'} was neither prefetched nor "
            "retrievable from fhirServer; send it as prefetch or grant a fhirAuthorization that can read it"
        )
        super().__init__(text)


class AuthenticationFailed(HooksError):
    """The EHR's JWT is missing or untrusted (401). ``reason`` is for the log only, never the response."""

    code = "OV-3050"
    http_status = 401

    def __init__(self, reason: str, *, iss: str | None = None, jti: str | None = None) -> None:
        self.reason = reason
        self.iss = iss
        self.jti = jti
        super().__init__(
            "unauthorized: send 'Authorization: Bearer <JWT>' signed ES384 or RS384 by a trusted issuer, "
            "with aud set to the exact URL called"
        )


class DecisionTimeout(HooksError):
    """The decision service did not answer before its deadline (503); the client may retry later."""

    code = "OV-3060"
    http_status = 503


class CardInvariantError(HooksError):
    """A response we built breaks a CDS Hooks invariant; it is our bug and is never sent (500)."""

    code = "OV-3070"
    http_status = 500
