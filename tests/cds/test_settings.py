import subprocess
import sys
from pathlib import Path

import pytest

from cds.errors import ConfigError
from cds.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    undocumented = [n for n in Settings.model_fields if f"ONCOVIGIL_{n.upper()}" not in readme]
    assert undocumented == []


def test_environment_variables_and_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "oncovigil.toml"
    toml.write_text("[oncovigil]\nsandbox_port = 9001\nfhir_page_size = 25\n")
    monkeypatch.setenv("ONCOVIGIL_CONFIG_FILE", str(toml))
    monkeypatch.setenv("ONCOVIGIL_FHIR_PAGE_SIZE", "30")
    settings = load_settings()
    assert settings.sandbox_port == 9001  # from the file
    assert settings.fhir_page_size == 30  # the environment wins over the file


def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOVIGIL_SANDBOX_PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"OV-0001.*sandbox_port"):
        load_settings()


def test_cli_exits_2_with_one_line_for_bad_config_and_bad_arguments(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "cds.cli"]
    bad = subprocess.run(
        [*exe, "runs"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"ONCOVIGIL_SANDBOX_PORT": "x", "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("oncovigil: OV-0001")
    assert "Traceback" not in bad.stderr
    usage = subprocess.run(
        [*exe, "sync", "--since", "yesterday-ish"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"ONCOVIGIL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert usage.returncode == 2 and "OV-0007" in usage.stderr
    unknown = subprocess.run([*exe, "no-such-command"], capture_output=True, text=True, cwd=tmp_path)
    assert unknown.returncode == 2


def test_help_on_every_command() -> None:
    from typer.testing import CliRunner

    from cds.cli import _register_groups, app

    _register_groups()
    runner = CliRunner()
    assert runner.invoke(app, ["--help"]).exit_code == 0
    for name in ("sync", "runs", "serve", "summaries", "demo", "sandbox", "cohort", "models", "train", "eval"):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_train_refuses_an_unknown_or_malformed_option_before_training(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "cds.cli"]
    env = {"ONCOVIGIL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    typo = subprocess.run(
        [*exe, "train", "toxicity", "-o", "epoch=2", "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert typo.returncode == 2
    assert "OV-0015" in typo.stderr and "epoch" in typo.stderr and "epochs" in typo.stderr
    assert "Traceback" not in typo.stderr
    malformed = subprocess.run([*exe, "train", "toxicity", "-o", "epochs"], capture_output=True, text=True, env=env)
    assert malformed.returncode == 2 and "key=value" in malformed.stderr
    for task, key in (
        ("ade", "epochs"),
        ("toxicity", "epochs"),
        ("drugcomb", "epochs"),
        ("phenotype", "epochs"),
        ("recommender", "max_steps"),
        ("summaries", "seed"),
    ):
        word = subprocess.run(
            [*exe, "train", task, "-o", f"{key}=many", "--out", str(tmp_path / "a")],
            capture_output=True,
            text=True,
            env=env,
        )
        assert word.returncode == 2, (task, word.stderr[-2000:])
        assert "OV-0015" in word.stderr and "many" in word.stderr and "Traceback" not in word.stderr, task
    base = subprocess.run(
        [*exe, "train", "ade", "-o", f"base={tmp_path / 'no-such-encoder'}", "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert base.returncode == 2 and "OV-0015" in base.stderr and "no-such-encoder" in base.stderr
    assert "Traceback" not in base.stderr
    assert not (tmp_path / "a").exists()
