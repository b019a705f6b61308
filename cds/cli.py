"""The ``oncovigil`` command line: the only place that prints or exits.

Each command group lives in its own ``cds/cli_*.py`` module exposing ``register(app)``; this module
builds the root app, loads settings once and maps every known error to a one-line message with
exit code 2 (bad input or configuration) or 1 (the operation failed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cds.errors import ConfigError, OncoVigilError
from cds.logs import configure_logging
from cds.settings import Settings, load_settings


class CliState:
    """Carries the settings to every command (typer's context object)."""

    def __init__(self, config_file: Path | None) -> None:
        self._config_file = config_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            if self._config_file is not None:
                import os

                os.environ["ONCOVIGIL_CONFIG_FILE"] = str(self._config_file)
            self._settings = load_settings()
            configure_logging(self._settings.log_level, self._settings.log_json)
        return self._settings


app = typer.Typer(
    name="oncovigil",
    help="Oncology pharmacovigilance: CDS Hooks service, FHIR R4 sync and compact ONNX extractors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file (same keys as the ONCOVIGIL_ variables).")
    ] = None,
) -> None:
    ctx.obj = CliState(config)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of this invocation (loaded lazily so that --help never needs a valid config)."""
    state = ctx.find_root().obj
    # duck-typed: under `python -m cds.cli` this module is loaded twice, so the class differs
    settings: Settings = state.settings
    return settings


def _register_groups() -> None:
    import importlib
    import pkgutil

    import cds

    if getattr(app, "_oncovigil_groups", False):
        return
    app._oncovigil_groups = True  # type: ignore[attr-defined]
    for info in sorted(pkgutil.iter_modules(cds.__path__), key=lambda m: m.name):
        if info.name.startswith("cli_"):
            module = importlib.import_module(f"cds.{info.name}")
            module.register(app)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    typer.echo(f"oncovigil: {message}", err=True)
    return typer.Exit(code)


def main() -> None:
    _register_groups()
    try:
        app(standalone_mode=True)
    except ConfigError as exc:
        typer.echo(f"oncovigil: {exc}", err=True)
        sys.exit(2)
    except OncoVigilError as exc:
        typer.echo(f"oncovigil: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # leaf packages' error families carry a code attribute
        code = getattr(exc, "code", None)
        if isinstance(code, str) and code.startswith("OV-"):
            typer.echo(f"oncovigil: {exc}", err=True)
            sys.exit(2 if getattr(exc, "user_error", False) else 1)
        if os.environ.get("ONCOVIGIL_LOG_LEVEL", "").upper() == "DEBUG":
            raise
        # our bug, not the user's: one line (the traceback with ONCOVIGIL_LOG_LEVEL=DEBUG)
        typer.echo(f"oncovigil: OV-0099: internal error {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
