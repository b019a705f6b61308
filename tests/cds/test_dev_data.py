"""``oncovigil models dev-data``: each task's dev split, written without training, is the one its card scored.

The committed cards name their dev splits (sentence, note and paper counts, a fingerprint of the DrugComb dev
papers); the files written here must be those splits, in the format ``oncovigil eval TASK --data`` reads.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_sync_kit import cli_env, run_cli

from cds.model_tasks import ARTIFACTS_ROOT
from cds.settings import load_settings
from models import read_card
from models.drugcomb.data import docs_fingerprint, read_jsonl

SETTINGS = load_settings()
DATA_DIR = SETTINGS.data_dir


def _oncovigil(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cli_env(home))


def _card_split(task: str, index: int = 0) -> str:
    return read_card(ARTIFACTS_ROOT / task).training_data[index].split


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, prerequisite: Any) -> dict[str, list[str]]:
    prerequisite((DATA_DIR / "ade_corpus_v2").is_dir(), f"the public data folder {DATA_DIR} is not here")
    out = tmp_path_factory.mktemp("dev-data")
    result = _oncovigil(
        ["models", "dev-data", "--data-dir", str(DATA_DIR), "--out", str(out)], tmp_path_factory.mktemp("home")
    )
    assert result.returncode == 0, result.stderr
    files: dict[str, list[str]] = json.loads(result.stdout)
    return files


def test_every_task_writes_its_dev_split(written: dict[str, list[str]]) -> None:
    assert set(written) == {"ade", "drugcomb", "phenotype", "recommender", "summaries", "toxicity"}
    assert all(Path(path).exists() for paths in written.values() for path in paths)


def test_the_ade_dev_corpus_is_the_split_the_card_scored(written: dict[str, list[str]]) -> None:
    folder = Path(written["ade"][0])
    counted = int(re.search(r"\((\d+) sentences\)", _card_split("ade")).group(1))  # type: ignore[union-attr]
    assert json.loads((folder / "SPLIT.json").read_text())["sentences"] == counted
    assert (folder / "DRUG-AE.rel").stat().st_size > 0 and (folder / "ADE-NEG.txt").stat().st_size > 0


def test_the_drugcomb_dev_papers_are_the_cards(written: dict[str, list[str]]) -> None:
    docs = read_jsonl(Path(written["drugcomb"][0]))
    split = _card_split("drugcomb")
    assert f"dev: {len(docs)} sentences" in split
    assert f"fingerprint {docs_fingerprint(docs)}" in split


def test_the_generated_dev_notes_match_the_cards(written: dict[str, list[str]]) -> None:
    toxicity = Path(written["toxicity"][0]).read_text().splitlines()
    assert f"({len(toxicity)} notes)" in _card_split("toxicity")
    assert all(json.loads(line)["kind"] == "radiotherapy" for line in toxicity)
    phenotype = Path(written["phenotype"][0]).read_text().splitlines()
    assert f"dev: {len(phenotype)} clean notes" in _card_split("phenotype")


def test_the_summaries_dev_groups_are_the_artifacts(written: dict[str, list[str]]) -> None:
    assert Path(written["summaries"][0]).read_bytes() == (ARTIFACTS_ROOT / "summariser" / "dev.jsonl").read_bytes()


def test_eval_reads_what_dev_data_wrote(tmp_path: Path) -> None:
    """Options follow `train`'s: a smaller toxicity dev set, scored by the built default model."""
    out = tmp_path / "out"
    made = _oncovigil(["models", "dev-data", "--task", "toxicity", "-o", "dev_patients=4", "--out", str(out)], tmp_path)
    assert made.returncode == 0, made.stderr
    data = out / "toxicity_dev.jsonl"
    assert 0 < len(data.read_text().splitlines()) < 20
    built = SETTINGS.resolved_models_dir / "toxicity"
    scored = _oncovigil(["eval", "toxicity", "--data", str(data), "--model", str(built), "--json"], tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["macro_f1"] > 0.8


def test_bad_requests_exit_2_with_a_message(tmp_path: Path) -> None:
    unknown = _oncovigil(["models", "dev-data", "--task", "nosuch", "--out", str(tmp_path)], tmp_path)
    assert unknown.returncode == 2 and "unknown task" in unknown.stderr
    untargeted = _oncovigil(["models", "dev-data", "-o", "dev_patients=4", "--out", str(tmp_path)], tmp_path)
    assert untargeted.returncode == 2 and "--task" in untargeted.stderr
    no_data = _oncovigil(
        ["models", "dev-data", "--task", "drugcomb", "--data-dir", str(tmp_path), "--out", str(tmp_path)], tmp_path
    )
    assert no_data.returncode == 2 and "does not exist" in no_data.stderr
