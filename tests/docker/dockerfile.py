"""A small Dockerfile reader for the image tests (no Docker engine here): instructions with continuations joined."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """Instructions in order; comment lines (also inside a continuation) are dropped, as Docker does."""
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, f"{path} ends inside a continuation"
    return result


def env_of(instrs: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE pairs of the last stage (quotes removed, no variable expansion)."""
    env: dict[str, str] = {}
    for ins in last_stage(instrs):
        if ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {ins.args!r}: use KEY=VALUE"
                env[key] = value
    return env


def arg_defaults(instrs: list[Instruction]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for ins in instrs:
        if ins.keyword == "ARG" and "=" in ins.args:
            key, _, value = ins.args.partition("=")
            defaults.setdefault(key, value)
    return defaults


def last_stage(instrs: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instrs) if ins.keyword == "FROM"]
    return instrs[starts[-1]:]


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)
