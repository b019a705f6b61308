"""``settings.artifacts``: a deployment builds a task from another artifact (the shipped fast ADE tagger, or
its own retrained one); bad choices exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_sync_kit import cli_env, run_cli

from cds.errors import ConfigError
from cds.extraction import load_extractors
from cds.model_tasks import (
    ARTIFACTS_ROOT,
    artifact_fingerprint,
    get_task,
    headline,
    is_built,
    make_context,
    resolve_artifact,
)
from cds.settings import load_settings
from models.ade.extractor import AdeExtractor
from models.registry import RuntimeConfig

MINILM = ARTIFACTS_ROOT / "ade-minilm"


def _oncovigil(args: list[str], home: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cli_env(home, **settings), timeout=600)


def test_the_environment_names_an_artifact_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOVIGIL_ARTIFACTS__ADE", "ade-minilm")
    settings = load_settings()
    assert settings.artifacts == {"ade": Path("ade-minilm")}
    context = make_context(settings)
    assert context.artifact(get_task("ade")) == MINILM  # a bare name is a shipped artifact
    assert context.artifact(get_task("toxicity")) == get_task("toxicity").artifact  # the others keep theirs


def test_a_path_is_taken_as_given(tmp_path: Path) -> None:
    assert resolve_artifact(tmp_path) == tmp_path
    assert resolve_artifact(Path("no-such-shipped-name")) == Path("no-such-shipped-name")


def test_unknown_task_and_folder_without_card_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OV-0034: artifacts\.adx: no such model task"):
        make_context(load_settings(artifacts={"adx": MINILM}))
    with pytest.raises(ConfigError, match=r"OV-0034: artifacts\.ade = .*holds no model_card\.json"):
        make_context(load_settings(artifacts={"ade": tmp_path}))


def test_cli_exits_2_on_a_bad_artifact_choice(tmp_path: Path) -> None:
    result = _oncovigil(["models", "list"], tmp_path, artifacts__ade=str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.startswith("oncovigil: OV-0034") and "Traceback" not in result.stderr


def test_a_list_setting_that_is_not_json_exits_2_with_the_fix(tmp_path: Path) -> None:
    result = _oncovigil(["models", "list"], tmp_path, onnx_providers="CPUExecutionProvider")
    assert result.returncode == 2
    assert "OV-0001" in result.stderr and '["CPUExecutionProvider"]' in result.stderr
    assert "internal error" not in result.stderr


def test_headline_picks_nested_metrics_and_leaves_out_missing_ones() -> None:
    metrics = {"corpus_dev": {"pair_f1": 0.65801, "n": 3}, "notes_dev": {"f1": None}}
    got = headline(metrics, ("corpus_dev.pair_f1", "corpus_dev.n", "notes_dev.f1", "corpus_dev.pair_f1.x", "nope"))
    assert got == {"corpus_dev.pair_f1": 0.658, "corpus_dev.n": 3}


def test_models_list_prints_headlines_and_json_the_whole_card(tmp_path: Path) -> None:
    """One readable line per task; ``--json`` holds every dev metric of the committed cards."""
    env = {"models_dir": str(tmp_path / "models")}  # nothing built there
    lines = _oncovigil(["models", "list"], tmp_path, **env)
    assert lines.returncode == 0, lines.stderr
    card = json.loads((get_task("ade").artifact / "model_card.json").read_text())
    pair_f1 = card["dev_metrics"]["corpus_dev"]["pair_f1"]
    [ade] = [line for line in lines.stdout.splitlines() if line.startswith("ade ")]
    assert " not built " in ade and f"corpus_dev.pair_f1={pair_f1}" in ade and len(ade) < 400, ade
    listed = json.loads(_oncovigil(["models", "list", "--json"], tmp_path, **env).stdout)
    assert set(listed) == {"ade", "drugcomb", "phenotype", "recommender", "summaries", "toxicity"}
    assert listed["ade"]["dev_metrics"] == card["dev_metrics"] and listed["ade"]["built"] is False
    assert listed["ade"]["graphs"] == []


def test_the_fast_ade_tagger_builds_from_its_shipped_artifact_and_tags(tmp_path: Path) -> None:
    """The MiniLM artifact merges, exports (int8 kept, as its card decided) and finds a drug and its event."""
    models_dir = tmp_path / "models"
    env = {"artifacts__ade": "ade-minilm", "models_dir": str(models_dir)}
    built = _oncovigil(["models", "build", "--task", "ade"], tmp_path, **env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "built" in built.stdout and "ade-minilm" in built.stdout
    target = models_dir / "ade"
    card = json.loads((target / "model_card.json").read_text())
    assert card["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (target / "model_int8.onnx").is_file()

    spec = get_task("ade")
    assert is_built(spec, target, MINILM)
    assert not is_built(spec, target, spec.artifact)  # dropping the setting rebuilds the default tagger

    again = _oncovigil(["models", "build", "--task", "ade"], tmp_path, **env)
    assert again.returncode == 0 and "is current" in again.stdout
    listed = _oncovigil(["models", "list"], tmp_path, **env)
    assert any(
        line.startswith("ade ") and "(ade-minilm)" in line and " built " in line for line in listed.stdout.splitlines()
    ), listed.stdout

    # the sync's version names the artifact, so a switch re-reads notes and findings say which tagger made them
    runtime = RuntimeConfig(providers=("CPUExecutionProvider",), threads=1)
    loaded = load_extractors(models_dir, runtime, tasks=("ade",))
    assert loaded.versions["ade"] == f"ade-extractor.v1@1+{artifact_fingerprint(MINILM)[:8]}"
    assert artifact_fingerprint(MINILM)[:8] != artifact_fingerprint(spec.artifact)[:8]

    extractor = AdeExtractor.load(target, runtime)
    text = "The patient developed severe neutropenia after cyclophosphamide."
    [findings] = extractor.predict([text])
    pairs = {(f.drug, f.event) for f in findings}
    assert any(drug == "cyclophosphamide" and "neutropenia" in event for drug, event in pairs), pairs
