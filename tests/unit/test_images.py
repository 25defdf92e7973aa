"""The GPU image's Python environment (docker/gpu-requirements.txt) resolves as one set for the image's platform,
linux x86_64 with Python 3.11, against the package index (pip's own resolver, --dry-run --report, with no local
pip configuration): torch comes out at the version vLLM pins, Prefect at the project's pin (the server's), and
every dependency of the project is in the set with the project's specifier (faiss as its GPU build)."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# The wheels the image can take: manylinux up to Debian 12's glibc (2.36), and pure-Python ones.
PLATFORMS = ["linux_x86_64", "manylinux2014_x86_64"] + [f"manylinux_2_{i}_x86_64" for i in range(5, 37)]


def _requirements(path: Path) -> dict[str, Requirement]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return {canonicalize_name(r.name): r for r in map(Requirement, filter(None, lines))}


def _project() -> dict[str, Requirement]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def test_gpu_requirements_carry_every_project_dependency():
    gpu, project = _requirements(REPO / "docker" / "gpu-requirements.txt"), _project()
    assert "faiss-gpu-cu12" in gpu and "faiss-cpu" not in gpu
    for name, req in project.items():
        if name in ("torch", "faiss-cpu"):  # torch: vLLM's pin decides; faiss: the GPU build stands in
            continue
        assert name in gpu, f"{name} is a project dependency missing from docker/gpu-requirements.txt"
        assert gpu[name].specifier == req.specifier, (name, str(gpu[name].specifier), str(req.specifier))
    assert str(project["prefect"].specifier).startswith("==")  # one Prefect everywhere


def _resolve(requirements: Path, tmp_path: Path) -> dict[str, dict]:
    """What pip would install from requirements in the image: name -> its report entry."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--quiet", "--ignore-installed",
           "--report", str(report), "--python-version", "3.11", "--only-binary=:all:",
           *[f"--platform={p}" for p in PLATFORMS], "-r", str(requirements)]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # this machine's local wheels and caps are not the image's
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    return {canonicalize_name(i["metadata"]["name"]): i for i in json.loads(report.read_text())["install"]}


def test_gpu_image_resolves_with_vllms_torch_and_the_projects_prefect(tmp_path):
    installed = _resolve(REPO / "docker" / "gpu-requirements.txt", tmp_path)
    version = {name: i["metadata"]["version"] for name, i in installed.items()}
    vllm_torch = [Requirement(r) for r in installed["vllm"]["metadata"]["requires_dist"]
                  if canonicalize_name(Requirement(r).name) == "torch" and not Requirement(r).marker]
    assert vllm_torch and all(version["torch"] in r.specifier for r in vllm_torch), (version["torch"], vllm_torch)
    assert "+cpu" not in version["torch"]  # PyPI's CUDA build, not a local CPU wheel
    assert version["torch"] in _project()["torch"].specifier
    assert version["prefect"] in _project()["prefect"].specifier
    assert version["vllm"] in _requirements(REPO / "docker" / "gpu-requirements.txt")["vllm"].specifier
    assert "faiss-gpu-cu12" in version and "faiss-cpu" not in version


@pytest.mark.parametrize("requirements, integration", [("worker-requirements.txt", "prefect-docker"),
                                                        ("kubernetes-worker-requirements.txt", "prefect-kubernetes")])
def test_pool_worker_resolves_with_the_projects_prefect(tmp_path, requirements, integration):
    """Each GPU pool's worker (docker/*worker-requirements.txt) runs the server's Prefect: the integrations'
    newest releases need a newer one, and pip would otherwise upgrade Prefect under the worker."""
    version = {n: i["metadata"]["version"] for n, i in _resolve(REPO / "docker" / requirements, tmp_path).items()}
    assert version["prefect"] in _project()["prefect"].specifier, version["prefect"]
    assert integration in version
