"""docker/Dockerfile, checked without a Docker engine: base, install line against the lock, CUDA libraries,
non-root user, model volume, health check against the app's real routes.

What is not checked here (no engine on the test machines) is listed in docker/README.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dockerfile import Instruction, arg_defaults, env_of, expand, instructions, last_stage
from runtime_closure import REQUIREMENTS, closure, lock_pins, render

from cds.app import create_app
from cds.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
VENV_SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
IMAGE_PREFIX = "/opt/oncovigil"
# what the base image and the NVIDIA driver provide; everything else must come from the wheels
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libstdc++.so.6",
               "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libcuda.so.1"}


@pytest.fixture(scope="module")
def instrs() -> list[Instruction]:
    return instructions(DOCKERFILE)


def _requirements() -> list[Requirement]:
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def test_the_base_is_slim_python_and_no_cuda_image(instrs: list[Instruction]) -> None:
    args = arg_defaults(instrs)
    bases = [expand(ins.args.split()[0], args) for ins in instrs if ins.keyword == "FROM"]
    assert bases == ["python:3.11-slim-bookworm"] * 2, bases
    assert all(ins.args.split()[0].startswith("${PYTHON_IMAGE}") for ins in instrs if ins.keyword == "FROM")


def test_the_image_installs_exactly_the_locked_runtime_closure(instrs: list[Instruction]) -> None:
    runs = [ins.args for ins in instrs if ins.keyword == "RUN"]
    assert any(re.search(r"pip install --no-deps -r /tmp/requirements-gpu\.txt\b", run) for run in runs), runs
    assert Instruction("COPY", "docker/requirements-gpu.txt /tmp/requirements-gpu.txt") in instrs
    assert REQUIREMENTS.read_text() == render(), (
        "docker/requirements-gpu.txt is not the runtime closure at the lock's versions; regenerate it with "
        "`.venv/bin/python tests/docker/runtime_closure.py > docker/requirements-gpu.txt`"
    )
    pins = lock_pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints/lock.txt: add {req.name}{req.specifier}"
        assert str(req.specifier) == f"=={pins[name][1]}", (req, pins[name])
    names = {canonicalize_name(r.name) for r in _requirements()}
    assert names == set(closure())


def test_gpu_runtime_only_no_cpu_onnxruntime_and_no_training_stack() -> None:
    reqs = {canonicalize_name(r.name): r for r in _requirements()}
    # onnxruntime and onnxruntime-gpu share one directory: installing both breaks one of them
    assert "onnxruntime" not in reqs
    assert reqs["onnxruntime-gpu"].extras == {"cuda", "cudnn"}
    assert {"torch", "transformers", "peft", "optimum", "accelerate", "triton"}.isdisjoint(reqs)
    assert {"nvidia-cudnn-cu13", "nvidia-cublas", "nvidia-cuda-runtime"} <= set(reqs)


def test_onnxruntime_finds_every_cuda_library_it_needs_on_the_image_library_path(instrs: list[Instruction]) -> None:
    env = env_of(instrs)
    dirs = [Path(d.replace(f"{IMAGE_PREFIX}/lib/python3.11/site-packages", str(VENV_SITE)))
            for d in env["LD_LIBRARY_PATH"].split(":")]
    assert all(d.is_dir() for d in dirs), dirs
    provider = VENV_SITE / "onnxruntime" / "capi" / "libonnxruntime_providers_cuda.so"
    dynamic = subprocess.run(["readelf", "-d", str(provider)], capture_output=True, text=True, check=True).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    assert "libcublasLt.so.13" in needed  # CUDA 13, as the nvidia-*-cu13 wheels
    # This virtualenv also has torch's CUDA wheels in the same folders; only what the image installs counts.
    from importlib import metadata

    owners = {str(file): req.name for req in _requirements() for file in metadata.distribution(req.name).files or []}
    for lib in sorted((needed - SYSTEM_LIBS) | {"libcudnn.so.9", "libcufft.so.12"}):
        found = [d / lib for d in dirs if (d / lib).exists()]
        assert found, f"{lib} is in none of {env['LD_LIBRARY_PATH']}"
        rel = found[0].relative_to(VENV_SITE).as_posix()
        assert rel in owners, f"{rel} comes from no package of {REQUIREMENTS.name}"


def test_the_service_runs_as_a_non_root_user_with_the_models_as_a_volume(instrs: list[Instruction]) -> None:
    final = last_stage(instrs)
    users = [ins.args for ins in final if ins.keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    env = env_of(instrs)
    volumes = [v for ins in final if ins.keyword == "VOLUME" for v in re.findall(r'"([^"]+)"', ins.args)]
    assert env["ONCOVIGIL_MODELS_DIR"] in volumes and env["ONCOVIGIL_HOME"] in volumes
    assert [ins.args for ins in final if ins.keyword == "ENTRYPOINT"] == ['["oncovigil"]']
    assert [ins.args for ins in final if ins.keyword == "CMD"] == ['["serve"]']


def test_the_environment_is_valid_settings_and_the_healthcheck_hits_a_real_route(
    instrs: list[Instruction], tmp_path: Path
) -> None:
    env = env_of(instrs)
    ours = {k.removeprefix("ONCOVIGIL_").lower(): v for k, v in env.items() if k.startswith("ONCOVIGIL_")}
    assert set(ours) <= set(Settings.model_fields), set(ours) - set(Settings.model_fields)
    settings = load_settings(**{**ours, "home": str(tmp_path), "environment": "development",
                                "cds_require_jwt": False})
    assert (settings.serve_host, settings.serve_port) == ("0.0.0.0", 8000)
    final = last_stage(instrs)
    assert [ins.args for ins in final if ins.keyword == "EXPOSE"] == [str(settings.serve_port)]
    [health] = [ins.args for ins in final if ins.keyword == "HEALTHCHECK"]
    assert "--start-period=" in health and " CMD " in f" {health} "
    [url] = re.findall(r"'(http://[^']+)'", expand(health, env))
    assert urlsplit(url).netloc == f"127.0.0.1:{settings.serve_port}"
    routes = {getattr(route, "path", None) for route in create_app(settings).routes}
    assert urlsplit(url).path in routes and {"/healthz", "/readyz"} <= routes


def test_everything_the_image_copies_exists_and_passes_the_dockerignore(instrs: list[Instruction]) -> None:
    sources = [ins.args.split()[0] for ins in instrs if ins.keyword == "COPY" and "--from" not in ins.args]
    assert sources and all((REPO / src).exists() for src in sources), sources
    allowed = {line[1:].rstrip("/") for line in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert {src.rstrip("/") for src in sources} <= allowed


SMOKE = """
import importlib.util, sys
sys.path[:0] = sys.argv[1:3]
assert importlib.util.find_spec("torch") is None, "the isolation leaks: torch is importable"
from fastapi.testclient import TestClient
from cds.app import create_app
from cds.settings import load_settings
from models.runtime import gpu_usable
import cds.scheduling, cds.runner, cds.sync, cds.extraction, cds.cli
import numpy, onnxruntime, tokenizers
gpu_usable(["CUDAExecutionProvider", "CPUExecutionProvider"])  # imports onnx, builds the probe session
settings = load_settings(home=sys.argv[3], environment="development", cds_require_jwt=False)
with TestClient(create_app(settings)) as client:
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/cds-services").status_code == 200
print("smoke ok")
"""


def _closure_site(target: Path) -> Path:
    """A site-packages holding only the image's packages (symlinks into this virtualenv)."""
    from importlib import metadata

    target.mkdir()
    for req in _requirements():
        for file in metadata.distribution(req.name).files or []:
            top = file.parts[0]
            if top in ("..", "bin", "__pycache__") or (target / top).exists():
                continue
            if (VENV_SITE / top).exists():
                (target / top).symlink_to(VENV_SITE / top)
    return target


def test_the_locked_closure_alone_runs_the_cli_and_the_service(tmp_path: Path) -> None:
    """What `docker build` would catch: a package the service imports that the image does not install."""
    site = _closure_site(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONCOVIGIL_", "PYTHON"))}
    env["ONCOVIGIL_HOME"] = str(tmp_path / "home")
    env["ONCOVIGIL_STATE_DB_URL"] = f"sqlite:///{tmp_path / 'home' / 'state.db'}"
    boot = "import sys; sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]; from cds.cli import main; main()"
    # -S: no site-packages of this virtualenv, only the closure and the repository
    upgrade = subprocess.run([sys.executable, "-S", "-c", boot, str(site), str(REPO), "db", "upgrade"],
                             capture_output=True, text=True, env=env, timeout=300, check=False)
    assert (upgrade.returncode, upgrade.stdout.strip()) == (0, "state database at revision 0001"), upgrade.stderr
    smoke = subprocess.run([sys.executable, "-S", "-c", SMOKE, str(site), str(REPO), str(tmp_path / "home")],
                           capture_output=True, text=True, env=env, timeout=300, check=False)
    assert smoke.returncode == 0 and "smoke ok" in smoke.stdout, smoke.stderr[-3000:]
