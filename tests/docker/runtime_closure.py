"""The service image's Python packages: the runtime roots and every package they need, pinned from the lock.

The image installs ``docker/requirements-gpu.txt`` with ``--no-deps``, so that file must be the whole
closure: every root, every (non-optional, Linux/CPython 3.11) requirement of each, at the versions of
``constraints/lock.txt``. The closure is computed from the metadata of the packages installed in this
virtualenv, which ``make venv`` installs from the same lock. ``python tests/docker/runtime_closure.py``
prints the file.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "constraints" / "lock.txt"
REQUIREMENTS = REPO / "docker" / "requirements-gpu.txt"

# What `oncovigil serve` / `sync` / `db` import at run time. Not here: the training stack (torch,
# transformers, peft, optimum, accelerate, gguf, sentencepiece), only `oncovigil train` / `models build` use it.
RUNTIME_ROOTS = (
    "alembic",
    "apscheduler",
    "fastapi",
    "fhir.resources",
    "httpx",
    "numpy",
    "onnx",  # models.runtime builds a one-node probe graph to learn whether CUDA really works
    "onnxruntime-gpu[cuda,cudnn]",  # CUDA 13 + cuDNN 9 as pip wheels: no CUDA base image
    "protobuf",
    "psycopg[binary]",
    "pydantic",
    "pydantic-settings",
    "pyjwt[crypto]",
    "sqlalchemy",
    "tokenizers",
    "typer",
    "uvicorn[standard]",
)
# pip's environment markers for the image: Debian slim, x86_64, CPython 3.11
IMAGE_MARKERS = {
    "python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def lock_pins() -> dict[str, tuple[str, str]]:
    """canonical name -> (name as spelled in the lock, version)."""
    pins: dict[str, tuple[str, str]] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = (name.strip(), version.strip())
    return pins


def closure(roots: tuple[str, ...] = RUNTIME_ROOTS) -> dict[str, set[str]]:
    """canonical name -> extras asked for, over every package the roots need in the image."""
    wanted: dict[str, set[str]] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in wanted and set(req.extras) <= wanted[name]:
            continue
        extras = wanted.setdefault(name, set())
        extras.update(req.extras)
        for text in metadata.distribution(name).requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(
                dep.marker.evaluate({**IMAGE_MARKERS, "extra": extra}) for extra in ("", *sorted(extras))
            ):
                todo.append(dep)
    return wanted


def render() -> str:
    pins = lock_pins()
    lines = [
        "# The service image's Python packages, installed with `pip install --no-deps -r` (docker/Dockerfile).",
        "# The runtime closure of tests/docker/runtime_closure.py RUNTIME_ROOTS at the versions of",
        "# constraints/lock.txt; regenerate with `.venv/bin/python tests/docker/runtime_closure.py`",
        "# (tests/docker/test_image.py fails when it drifts). No torch: the image serves, it does not train.",
    ]
    for name, extras in sorted(closure().items()):
        # a package missing from the lock is written at its installed version; test_image.py then fails on it
        spelled, version = pins.get(name, (metadata.distribution(name).name, metadata.version(name)))
        suffix = f"[{','.join(sorted(extras))}]" if extras else ""
        lines.append(f"{spelled}{suffix}=={version}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
