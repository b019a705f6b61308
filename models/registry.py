"""A plain registry from versioned names (``ade-extractor.v1``) to extractor factories.

A factory takes the model directory and a :class:`RuntimeConfig` and returns a ready extractor. Changed
behaviour gets a new name; the model card records the name that reads the directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ModelLoadError
from models.runtime import DEFAULT_PROVIDERS


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run ONNX sessions: provider order, thread count, whether int8 may be used on CPU."""

    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    threads: int = 0
    allow_int8: bool = True
    require: str | None = None
    max_batch: int = 32
    # Idle ONNX threads busy-wait for the next op by default; on a host that shares its cores with the FHIR
    # server and the writer (the nightly sync), that spinning takes CPU from them. False makes them sleep.
    spin: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


Factory = Callable[[Path, RuntimeConfig], Any]


class Registry:
    """Name -> factory; instances are created by the composition root, not at import time."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def register(self, name: str, factory: Factory) -> None:
        if name in self._factories and self._factories[name] is not factory:
            raise ValueError(f"registry name {name!r} is taken; changed behaviour needs a new versioned name")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Factory:
        try:
            return self._factories[name]
        except KeyError:
            raise ModelLoadError(
                "OV-2005",
                f"no extractor registered as {name!r} (known: {', '.join(self.names())}); "
                "the model card names a version this release cannot read",
            ) from None

    def create(self, name: str, model_dir: Path, config: RuntimeConfig | None = None) -> Any:
        return self.get(name)(model_dir, config or RuntimeConfig())


def default_registry() -> Registry:
    """The registry with every extractor this release ships (imports stay lazy inside the factories)."""
    import importlib
    import importlib.util

    registry = Registry()
    for module_name in _TASK_MODULES:
        if importlib.util.find_spec(module_name) is None:
            continue  # a task package not present in this build
        module = importlib.import_module(module_name)
        module.register(registry)
    return registry


# Each task package exposes ``register(registry)``; listed here so discovery needs no filesystem scan.
_TASK_MODULES = ("models.ade", "models.toxicity", "models.drugcomb", "models.recommender", "models.phenotype")
