"""The JSON Lines writer behind `models dev-data` and the summaries eval file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds.jsonl_files import write_jsonl


def test_writes_one_sorted_object_per_line_and_counts_them(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dev.jsonl"
    count = write_jsonl(out, ({"b": i, "a": "x"} for i in range(3)))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert count == 3
    assert lines[0] == '{"a": "x", "b": 0}'
    assert [json.loads(line)["b"] for line in lines] == [0, 1, 2]
    assert sorted(p.name for p in out.parent.iterdir()) == ["dev.jsonl"]  # no staging file left


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "dev.jsonl"
    write_jsonl(out, [{"n": 1}, {"n": 2}])

    def rows() -> Iterator[dict[str, int]]:
        yield {"n": 3}
        raise RuntimeError("generator failed half way")

    with pytest.raises(RuntimeError, match="half way"):
        write_jsonl(out, rows())
    assert out.read_text(encoding="utf-8") == '{"n": 1}\n{"n": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.jsonl"]
