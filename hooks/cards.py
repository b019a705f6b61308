"""CDS Hooks 2.0 response models (cards, suggestions, actions, links) with the spec invariants as validators.

The invariants (HL7 cds-hooks ``input/fsh/invariants``) are enforced on construction, so a card that breaks
them fails where it is built; the router validates the whole response once more before sending (a card
assembled with ``model_construct`` is caught there and answered as a 500, never sent):

- cds-resp-1: at most one suggestion ``isRecommended`` when ``selectionBehavior`` is ``at-most-one``
- cds-resp-2: a ``delete`` action has ``resourceId`` and no ``resource``
- cds-resp-3: ``appContext`` only on ``smart`` links
- cds-resp-4: override reasons carry a ``display``
- cds-resp-5: every action has a ``description``
- cds-resp-6: suggestions imply ``selectionBehavior``
- ``summary`` is shorter than 140 characters
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from hooks.wire import Coding, WireModel

SUMMARY_MAX_CHARS = 139  # the spec says "<140-character"
Indicator = Literal["info", "warning", "critical"]
SelectionBehavior = Literal["at-most-one", "any"]
ActionType = Literal["create", "update", "delete"]

_RELATIVE_REF = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")
_ABSOLUTE_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


class Source(WireModel):
    """Who produced the card; ``topic`` lets clients filter card kinds."""

    label: str = Field(min_length=1, max_length=200)
    url: str | None = Field(default=None, pattern=_ABSOLUTE_URL.pattern)
    icon: str | None = Field(default=None, pattern=_ABSOLUTE_URL.pattern)
    topic: Coding | None = None


class Action(WireModel):
    """One change to the EHR's order: create/update carry a full ``resource``, delete a ``resourceId``."""

    type: ActionType
    description: str = Field(min_length=1, max_length=1000)  # cds-resp-5
    resource: dict[str, Any] | None = None
    resourceId: str | None = Field(default=None, pattern=_RELATIVE_REF.pattern)

    @model_validator(mode="after")
    def _resource_matches_type(self) -> Self:
        if self.type == "delete":
            if self.resourceId is None or self.resource is not None:
                raise ValueError("cds-resp-2: a delete action needs resourceId and no resource")
        else:
            if not self.resource or not isinstance(self.resource.get("resourceType"), str):
                raise ValueError(f"a {self.type} action needs a FHIR resource with a resourceType")
        return self


class Suggestion(WireModel):
    """A set of actions the clinician may accept as one unit (applied delete -> create -> update)."""

    label: str = Field(min_length=1, max_length=200)
    uuid: str | None = Field(default=None, min_length=1, max_length=100)
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(WireModel):
    """A link to a reference page (``absolute``) or a SMART app (``smart``)."""

    label: str = Field(min_length=1, max_length=200)
    url: str = Field(pattern=_ABSOLUTE_URL.pattern)
    type: Literal["absolute", "smart"]
    appContext: str | None = Field(default=None, min_length=1)
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_smart(self) -> Self:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("cds-resp-3: appContext is only allowed on smart links")
        return self


class Card(WireModel):
    """One piece of advice shown to the clinician."""

    uuid: str | None = Field(default=None, min_length=1, max_length=100)
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX_CHARS)
    detail: str | None = Field(default=None, min_length=1, max_length=20_000)
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] = Field(default_factory=list)
    selectionBehavior: SelectionBehavior | None = None
    overrideReasons: list[Coding] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)

    @field_validator("overrideReasons")
    @classmethod
    def _override_reasons_have_display(cls, reasons: list[Coding]) -> list[Coding]:
        if any(not r.display for r in reasons):
            raise ValueError("cds-resp-4: every override reason needs a display")
        return reasons

    @model_validator(mode="after")
    def _suggestion_rules(self) -> Self:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("cds-resp-6: a card with suggestions needs selectionBehavior")
        recommended = sum(1 for s in self.suggestions if s.isRecommended)
        if self.selectionBehavior == "at-most-one" and recommended > 1:
            raise ValueError("cds-resp-1: at most one suggestion may be isRecommended under at-most-one")
        uuids = [s.uuid for s in self.suggestions if s.uuid is not None]
        if len(uuids) != len(set(uuids)):
            raise ValueError("suggestion uuids must be unique within a card")
        return self


class CdsResponse(WireModel):
    """The answer to a hook call. ``cards: []`` means "no advice" and is always sent."""

    cards: list[Card] = Field(default_factory=list)
    systemActions: list[Action] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_card_uuids(self) -> Self:
        uuids = [c.uuid for c in self.cards if c.uuid is not None]
        if len(uuids) != len(set(uuids)):
            raise ValueError("card uuids must be unique within a response (feedback refers to them)")
        return self

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        data.setdefault("cards", [])
        return data
