"""Base of the CDS Hooks wire models: serialisation that omits empty fields, and the shared Coding type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


def is_empty(value: object) -> bool:
    """The spec asks to omit optional fields rather than send ``null``, ``""``, ``[]`` or ``{}``."""
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


class WireModel(BaseModel):
    """A response-side wire model: strict on input (our own bugs surface), empty fields never serialised."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    # The missing return annotation is deliberate: with one, pydantic documents the serialised form as a
    # free-form object and the OpenAPI document would lose every field.
    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not is_empty(v)}
        return data

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as sent on the wire (aliases, ISO dates, empties omitted)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data


class Coding(WireModel):
    """CDS Hooks Coding: ``code`` required; ``system`` and ``display`` optional (display is required for
    override reasons, see :class:`hooks.cards.Card`)."""

    system: str | None = Field(default=None, min_length=1, max_length=500)
    code: str = Field(min_length=1, max_length=200)
    display: str | None = Field(default=None, min_length=1, max_length=500)


class RequestModel(BaseModel):
    """A request-side wire model: tolerant of fields added by later spec versions or vendors."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestCoding(RequestModel):
    """A Coding sent to us (feedback override reasons); vendors may add fields."""

    system: str | None = Field(default=None, max_length=500)
    code: str = Field(min_length=1, max_length=200)
    display: str | None = Field(default=None, max_length=500)
