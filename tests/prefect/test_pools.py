"""The kubernetes and docker GPU pools as a platform team creates them: deployments/setup.sh on the real
server, from the committed job templates; then the pod (or container) a GPU phase would get, rendered as a
worker renders it (Prefect's own BaseJobConfiguration.from_template_and_values) from that pool's template and
the GPU deployment's job variables in prefect.yaml, resolved as `prefect deploy` resolves them. No cluster or
GPU host here: what is checked is what would be sent to one."""
import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PREFECT
from prefect.client.orchestration import get_client
from prefect.utilities.templating import apply_values
from prefect.workers.base import BaseJobConfiguration
from pydantic import ConfigDict

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]
POOL = "semievol-gpu-k8s"


class _Rendered(BaseJobConfiguration):
    model_config = ConfigDict(extra="allow")  # the kubernetes fields (job_manifest, ...) without prefect-kubernetes


def _setup_pool(name: str, pool_type: str, gpus: int):
    """deployments/setup.sh on the test server, as a platform team runs it; returns the pool it made."""
    env = {**os.environ, "GPU_POOL": name, "GPU_POOL_TYPE": pool_type, "GPUS": str(gpus),
           "PATH": f"{Path(PREFECT).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", "deployments/setup.sh"], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    with get_client(sync_client=True) as client:
        return client.read_work_pool(name)


def _render_gpu_phase(pool, deploy_env: dict, monkeypatch):
    """The job a GPU phase would get from `pool`: the GPU deployment's job variables in prefect.yaml, resolved
    as `prefect deploy` resolves them (it fills {{ $VAR }} from its own environment), rendered by Prefect."""
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    (gpu,) = [d for d in spec["deployments"] if d["name"] == "gpu"]
    for k, v in deploy_env.items():
        monkeypatch.setenv(k, v)
    job_variables = apply_values(gpu["work_pool"]["job_variables"], dict(os.environ), remove_notset=False)

    async def render():
        async with get_client() as c:
            return await _Rendered.from_template_and_values(pool.base_job_template, job_variables, client=c)

    return asyncio.run(render())


def test_kubernetes_gpu_pool_from_the_committed_template(prefect_server, monkeypatch):
    pool = _setup_pool(POOL, "kubernetes", 1)
    try:
        assert pool.type == "kubernetes" and pool.concurrency_limit == 1
        assert pool.base_job_template == json.loads((REPO / "deployments" / "kubernetes-gpu.json").read_text())
        job = _render_gpu_phase(pool, {"SEMIEVOL_RUNS": "/mnt/semievol/runs", "SEMIEVOL_DATA": "/mnt/semievol/fpb",
                                       "SEMIEVOL_GPU_IMAGE": "registry.example/semievol-gpu:1",
                                       "SEMIEVOL_REPO": "/srv/semievol"}, monkeypatch)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_work_pool(POOL)

    assert job.env["SEMIEVOL_RESULTS"] == "/mnt/semievol/runs/.prefect-results"
    pod = job.job_manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/semievol-gpu:1"
    # One GPU per phase, requested from the device plugin: the pod sees only the GPU it was given.
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["runs"]["mountPath"] == "/mnt/semievol/runs" and not mounts["runs"].get("readOnly")
    assert mounts["data"]["mountPath"] == "/mnt/semievol/fpb" and mounts["data"]["readOnly"] is True
    assert mounts["cache"]["mountPath"] == "/cache" and mounts["shm"]["mountPath"] == "/dev/shm"
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert claims == {"runs": "semievol-runs", "data": "semievol-data", "cache": "semievol-cache", "shm": None}
    assert pod["restartPolicy"] == "Never" and job.job_manifest["spec"]["backoffLimit"] == 0


def test_docker_gpu_pool_from_the_committed_template(prefect_server, monkeypatch):
    """The server here has no network, as many on-premise ones: created with Prefect's fallback docker template,
    the pool would drop the GPU request (container_create_kwargs) without a word."""
    pool_name = "semievol-gpu-docker"
    pool = _setup_pool(pool_name, "docker", 2)
    try:
        assert pool.type == "docker" and pool.concurrency_limit == 2
        assert pool.base_job_template == json.loads((REPO / "deployments" / "docker-gpu.json").read_text())
        job = _render_gpu_phase(pool, {"SEMIEVOL_RUNS": "/srv/runs", "SEMIEVOL_DATA": "/srv/fpb",
                                       "SEMIEVOL_GPU_IMAGE": "semievol-gpu:latest"}, monkeypatch)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_work_pool(pool_name)
    assert job.image == "semievol-gpu:latest"
    assert job.container_create_kwargs["device_requests"] == [{"driver": "nvidia", "count": 1,
                                                                "capabilities": [["gpu"]]}]
    assert set(job.volumes) == {"/srv/runs:/srv/runs", "/srv/fpb:/srv/fpb:ro", "semievol-cache:/cache"}
