"""One settings object, built once in the composition root and passed down.

Environment variables use the prefix ``ONCOVIGIL_`` (nested with ``__``); a TOML file named by
``ONCOVIGIL_CONFIG_FILE`` (or ``--config``) supplies defaults below the environment.
Units are part of the names (``_s``, ``_mb``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from cds.errors import ConfigError
from models.fp16 import Fp16Mode

Environment = Literal["development", "test", "production"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# spellings the logging module also accepts, kept working for configurations that already use them
_LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def default_home() -> Path:
    """Where OncoVigil keeps its state, logs, sandbox pid and model cache unless told otherwise."""
    return Path(os.environ.get("ONCOVIGIL_HOME", Path.cwd() / "var"))


class Settings(BaseSettings):
    """Every setting is documented in the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="ONCOVIGIL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    environment: Environment = "development"
    home: Path = Field(default_factory=default_home)
    log_json: bool = False
    log_level: str = "INFO"  # one of LOG_LEVELS, any case

    # FHIR server the sync and the CDS service talk to (default: the local sandbox)
    fhir_base_url: str = "http://127.0.0.1:8089/fhir"
    fhir_connect_timeout_s: float = 5.0
    fhir_read_timeout_s: float = 30.0
    fhir_max_connections: int = 10
    fhir_page_size: int = 50
    fhir_max_retries: int = 4
    fhir_write_batch_size: int = 100
    fhir_auth: Literal["none", "bearer", "smart-backend"] = "none"
    fhir_bearer_token: str | None = None
    smart_token_url: str | None = None
    smart_client_id: str | None = None
    smart_private_key_file: Path | None = None
    smart_key_id: str | None = None
    smart_alg: Literal["RS384", "ES384"] = "RS384"
    smart_scope: str = "system/*.read system/AdverseEvent.write system/DetectedIssue.write"

    # HAPI sandbox (docker/hapi)
    sandbox_dir: Path = Field(default_factory=lambda: Path(__file__).resolve().parent.parent / "docker" / "hapi")
    sandbox_port: int = Field(default=8089, ge=1, le=65535)
    sandbox_heap_mb: int = 1536
    sandbox_start_timeout_s: float = 300.0
    sandbox_database: Literal["memory", "file"] = "file"

    # data and models
    data_dir: Path = Field(default_factory=lambda: Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    models_dir: Path | None = None
    onnx_providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    onnx_threads: int = Field(default=0, ge=0)  # 0: onnxruntime picks
    onnx_spin_wait: bool = True
    # fp16 variant for CUDA hosts (models.fp16): "auto" builds and checks it when this host really runs CUDA,
    # "always" also on a CPU build host preparing directories for a GPU server (checked on CPU), "never" skips it
    onnx_fp16: Fp16Mode = "auto"
    # task -> the adapter artifact `models build` builds it from instead of models/artifacts/<task>: a folder,
    # or the name of one shipped under models/artifacts (ONCOVIGIL_ARTIFACTS__ADE=ade-minilm)
    artifacts: dict[str, Path] = Field(default_factory=dict)

    # cohort
    # bounds of `cohort generate --patients`, so a bad default fails here and not at a flag the user never passed
    cohort_patients: int = Field(default=50, ge=1, le=9999)
    cohort_seed: int = 7

    # state
    state_db_url: str | None = None

    # CDS Hooks service (`oncovigil serve`)
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8000, ge=1, le=65535)
    cds_require_jwt: bool = True
    cds_trusted_issuers_file: Path | None = None
    cds_public_base_url: str | None = None
    cds_cors_origins: list[str] = Field(default_factory=list)
    cds_decision_timeout_s: float = 4.0
    cds_max_body_bytes: int = 1_048_576
    cds_context_cache_ttl_s: float = 600.0

    # nightly sync
    sync_cron: str = "0 2 * * *"
    sync_timezone: str = "UTC"
    sync_batch_size: int = 16
    sync_misfire_grace_s: int = 3600
    sync_lease_ttl_s: float = 3 * 3600.0
    summary_window_days: int = 365

    # Ray backfill engine (`oncovigil sync --engine ray`); only read when that engine is asked for
    ray_address: str | None = None
    ray_window_s: float = Field(default=86400.0, gt=0)
    ray_actors: int = Field(default=0, ge=0)

    @field_validator("onnx_providers")
    @classmethod
    def _some_providers(cls, value: list[str]) -> list[str]:
        # only the shape is checked here; models.runtime knows which provider names this onnxruntime offers
        if not value:
            raise ValueError("name at least one provider, such as [\"CPUExecutionProvider\"]")
        if any(not name.strip() for name in value):
            raise ValueError("provider names must not be empty")
        return [name.strip() for name in value]

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        # checked here, not at configure_logging: logging's own ValueError would surface as an internal error
        level = _LOG_LEVEL_ALIASES.get(value.strip().upper(), value.strip().upper())
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _derived_paths(self) -> Settings:
        if self.models_dir is None:
            self.models_dir = self.home / "models"
        if self.state_db_url is None:
            self.state_db_url = f"sqlite:///{self.home / 'state.db'}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def resolved_models_dir(self) -> Path:
        assert self.models_dir is not None  # set by the validator
        return self.models_dir

    @property
    def backbones_dir(self) -> Path:
        """Where backbones that ship packed (all-mpnet-base-v2's split zip) are unpacked once."""
        return self.home / "backbones"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the optional TOML file named by ONCOVIGIL_CONFIG_FILE."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("ONCOVIGIL_CONFIG_FILE")
        if not path:
            return {}
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError("OV-0002", f"config file {path} does not exist; fix ONCOVIGIL_CONFIG_FILE") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("OV-0003", f"config file {path} is not valid TOML: {exc}") from exc
        except RecursionError as exc:
            # tomllib parses nested arrays recursively; thousands of `[` exhaust the stack before any decode error
            raise ConfigError("OV-0003", f"config file {path} is not valid TOML: nested too deeply") from exc
        except UnicodeDecodeError as exc:
            # tomllib decodes before it parses, so a non-UTF-8 file never reaches TOMLDecodeError
            raise ConfigError(
                "OV-0003",
                f"config file {path} is not valid TOML: not UTF-8 (bad byte at offset {exc.start}); save it as UTF-8",
            ) from exc
        except OSError as exc:
            raise ConfigError(
                "OV-0142",
                f"config file {path} cannot be read ({exc.strerror or exc}); "
                "name a readable TOML file with --config or ONCOVIGIL_CONFIG_FILE",
            ) from exc
        section = data.get("oncovigil", data)
        if not isinstance(section, dict):
            raise ConfigError("OV-0004", f"config file {path}: [oncovigil] must be a table")
        return section


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise ConfigError with every invalid field named."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError("OV-0001", f"invalid configuration ({problems}); see README 'Configuration'") from exc
    except SettingsError as exc:
        # a list or table setting given in the environment must be JSON (or, for tables, one variable per key)
        raise ConfigError(
            "OV-0001",
            f"invalid configuration ({exc}): list settings take JSON such as '[\"CPUExecutionProvider\"]', "
            "table settings one variable per key such as ONCOVIGIL_ARTIFACTS__ADE=ade-minilm; "
            "see README 'Configuration'",
        ) from exc
