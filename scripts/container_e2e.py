"""The images and the docker-type GPU pool, built and run for real with podman (on demand; not part of CI, whose
45 minutes it would not fit: building the images alone downloads several GB).

1. A base image made locally (debootstrap of Debian 12, `podman import`): no image registry is needed.
2. docker/cpu.Dockerfile built on it (and docker/gpu.Dockerfile with --gpu-image: its CUDA parts stay unused).
3. A Prefect server, the pools of deployments/setup.sh with a docker-type GPU pool, the deployments of
   deployments/prefect.yaml, and a docker worker (prefect-docker) talking to `podman system service`'s Docker API.
4. A round from the CLI with --gpu-deployment semievol-phase/gpu: each GPU phase is a flow run of the GPU pool,
   i.e. one container, with the round directory and the data mounted at their host paths.
5. The same round in one process, in a container of the same image, and the two eval.json compared.

Writes benchmarks/results/containers.{json,md}. Needs root with podman, runc and debootstrap (Debian:
apt-get install podman runc debootstrap) and the project's .venv (scripts/setup.sh).
    .venv/bin/python scripts/container_e2e.py [--gpu-image] [--keep]
Behind a TLS-intercepting proxy, PIP_CERT (as pip reads it) is mounted into the builds; a folder of wheels in
PIP_FIND_LINKS that holds torch's CPU build is used for it (PyTorch's CPU index otherwise).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from flows.round import GPU_PHASES
from semievol_core.store import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASE = "localhost/semievol-base:bookworm"
WORKER_REQUIREMENTS = REPO / "docker" / "worker-requirements.txt"
DATA = REPO / "data" / "samples" / "fpb"
# podman as this sandbox runs it: crun and systemd cgroups fail here, and so does raising ulimits.
CONTAINERS_CONF = """[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def sh(args, env=None, timeout=None, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, args)), flush=True)
    out = subprocess.run(list(map(str, args)), env=env, timeout=timeout, text=True, capture_output=True, **kw)
    if out.returncode:
        sys.exit(f"failed ({out.returncode}): {' '.join(map(str, args))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(1)


def image_size(tag: str) -> int:
    return int(sh(["podman", "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())


def make_base(work: Path) -> float | None:
    """Debian 12 minbase as a local image; None when it already exists."""
    if subprocess.run(["podman", "image", "exists", BASE]).returncode == 0:
        return None
    start = time.monotonic()
    rootfs = work / "rootfs"
    sh(["debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian"], timeout=1800)
    tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
    sh(["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE], stdin=tar.stdout, timeout=600)
    tar.wait()
    shutil.rmtree(rootfs)
    return time.monotonic() - start


def build(dockerfile: str, tag: str) -> float:
    args = ["podman", "build", "--network", "host", "-f", dockerfile, "-t", tag, "--build-arg", f"BASE={BASE}"]
    cert = os.environ.get("PIP_CERT")
    if cert and Path(cert).is_file():
        args += ["--volume", f"{cert}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    wheels = next((Path(d) for d in os.environ.get("PIP_FIND_LINKS", "").split()
                   if any(Path(d).glob("torch-2.13.0+cpu-*.whl"))), None)
    if wheels and "cpu" in dockerfile:
        args += ["--volume", f"{wheels}:/wheels:ro", "--build-arg", "TORCH_PIP_ARGS=--find-links /wheels"]
    start = time.monotonic()
    sh(args + ["."], cwd=REPO, timeout=3 * 3600)
    return time.monotonic() - start


def patched_prefect_yaml(work: Path) -> Path:
    """deployments/prefect.yaml as committed, but for what this machine lacks: no GPU to request (the phases run
    on the CPU with the hf backend), and the containers share the host's network to reach the server on
    loopback. Everything else (pull step, image, mounts, env) is the committed file's."""
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    gpu = spec["definitions"]["gpu_pool"]["job_variables"]
    del gpu["container_create_kwargs"]
    gpu["network_mode"] = "host"
    gpu["env"] = {**gpu["env"], "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # The GPU deployment names its pool by the YAML alias *gpu_pool: it holds this very dict.
    out = work / "prefect.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def round_config(work: Path, runs: Path) -> Path:
    cfg = {"runs_dir": str(runs), "progress": False,
           "data": {"labeled": str(DATA / "labeled.csv"), "unlabeled": str(DATA / "unlabeled.csv"),
                    "test": str(DATA / "test.csv"), "limit_labeled": 8, "limit_unlabeled": 12, "limit_test": 8},
           "lora": {"lr": 1e-3, "batch_size": 4}, "method": {"max_new_tokens": 24}}
    path = work / "round.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu-image", action="store_true",
                    help="also build docker/gpu.Dockerfile (downloads ~10 GB) and run the GPU pool's containers from "
                         "it (its CUDA parts unused: the phases run on the CPU with the hf backend)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and the containers")
    args = ap.parse_args()
    for tool in ("podman", "runc", "debootstrap"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (Debian: apt-get install podman runc debootstrap)")
    venv = REPO / ".venv" / "bin"
    if not (venv / "semievol").exists():
        sys.exit("the project's .venv is missing: run scripts/setup.sh first")
    work = Path(tempfile.mkdtemp(prefix="semievol-containers-"))
    os.environ.setdefault("CONTAINERS_CONF", str(work / "containers.conf"))
    if not Path(os.environ["CONTAINERS_CONF"]).exists():
        Path(os.environ["CONTAINERS_CONF"]).write_text(CONTAINERS_CONF)
    started = dt.datetime.now(dt.timezone.utc)
    commit = sh(["git", "rev-parse", "HEAD"], cwd=REPO).stdout.strip()
    # What goes into the images and the deployments, changed since that commit?
    if sh(["git", "status", "--porcelain", "--", "pyproject.toml", "docker", "deployments", "semievol_core", "tasks",
           "flows", "examples", "scripts"], cwd=REPO).stdout.strip():
        commit += "+dirty"
    podman = sh(["podman", "--version"]).stdout.split()[-1]
    result = {"date": started.date().isoformat(), "commit": commit,
              "machine": f"{os.cpu_count()} cores, {platform.machine()}, podman {podman}",
              "load_average_at_start": round(os.getloadavg()[0], 2), "seconds": {}}
    secs = result["seconds"]
    procs: list[subprocess.Popen] = []
    try:
        base_s = make_base(work)
        if base_s is not None:
            secs["base_image"] = round(base_s, 1)
        image = "localhost/semievol-cpu:latest"
        secs["build_cpu_image"] = round(build("docker/cpu.Dockerfile", image), 1)
        sizes = {"base": image_size(BASE), "cpu": image_size(image)}
        if args.gpu_image:
            image = "localhost/semievol-gpu:latest"
            secs["build_gpu_image"] = round(build("docker/gpu.Dockerfile", image), 1)
            sizes["gpu"] = image_size(image)
        result["gpu_pool_image"] = image
        result["image_mb"] = {k: round(v / 2**20) for k, v in sizes.items()}

        # The docker worker's own environment: Prefect as on the server, and prefect-docker.
        wvenv = REPO / ".venv-docker-worker"
        if not (wvenv / "bin" / "prefect").exists():
            sh([sys.executable, "-m", "venv", wvenv])
            sh([wvenv / "bin" / "pip", "install", "-q", "-r", WORKER_REQUIREMENTS], timeout=1800)

        sock = work / "podman.sock"
        procs.append(subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                                      stdout=open(work / "podman-service.log", "wb"), stderr=subprocess.STDOUT))
        wait_for(sock.exists, "podman's Docker API socket", 60)
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        runs = work / "runs"
        runs.mkdir()
        env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "PREFECT_API_URL": api,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "SEMIEVOL_REPO": str(REPO), "SEMIEVOL_DATA": str(DATA),
               "SEMIEVOL_RUNS": str(runs), "SEMIEVOL_GPU_IMAGE": image,
               "SEMIEVOL_RESULTS": str(runs / ".prefect-results"), "DOCKER_HOST": f"unix://{sock}"}
        procs.append(subprocess.Popen([venv / "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                                       str(port)], env=env, stdout=open(work / "server.log", "wb"),
                                      stderr=subprocess.STDOUT))

        def healthy() -> bool:
            return subprocess.run(["curl", "-fs", f"{api}/health"], capture_output=True).returncode == 0
        wait_for(healthy, "the Prefect server", 300)
        wenv = {**env, "PATH": f"{wvenv / 'bin'}{os.pathsep}{env['PATH']}", "GPU_POOL_TYPE": "docker"}
        sh(["bash", "deployments/setup.sh"], env=wenv, cwd=REPO, timeout=300)
        denv = {**env, "PATH": f"{venv}{os.pathsep}{env['PATH']}"}
        sh([venv / "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", patched_prefect_yaml(work)],
           env=denv, cwd=REPO, timeout=600)
        procs.append(subprocess.Popen([wvenv / "bin" / "prefect", "worker", "start", "--pool", "semievol-gpu",
                                       "--type", "docker"], env={**wenv, "PREFECT_WORKER_QUERY_SECONDS": "3"},
                                      stdout=open(work / "worker-gpu.log", "wb"), stderr=subprocess.STDOUT))
        config = round_config(work, runs)

        start = time.monotonic()
        out = sh([venv / "semievol", "round", "--config", config, "--name", "in-containers", "--gpu-deployment",
                  "semievol-phase/gpu"], env=denv, cwd=REPO, timeout=3 * 3600)
        secs["round_gpu_phases_in_containers"] = round(time.monotonic() - start, 1)
        print(out.stdout)
        result["gpu_phase_runs"] = gpu_phase_runs(env, image)

        # The same round in one process, in a container of the same image (same packages: only the dispatch
        # differs). Its own results folder, so nothing comes from the first round's cache.
        start = time.monotonic()
        sh(["podman", "run", "--rm", "--network", "host", "-v", f"{runs}:{runs}", "-v", f"{DATA}:{DATA}:ro",
            "-v", f"{config}:{config}:ro", "-e", f"PREFECT_API_URL={api}", "-e", "HF_HUB_OFFLINE=1",
            "-e", "TRANSFORMERS_OFFLINE=1", "-e", f"SEMIEVOL_RESULTS={runs}/.one-process-results", image,
            "semievol", "round", "--config", config, "--name", "one-process"], timeout=3 * 3600)
        secs["round_in_one_process"] = round(time.monotonic() - start, 1)
        evals = {name: json.loads((runs / name / "eval.json").read_text()) for name in ("in-containers",
                                                                                        "one-process")}
        result["eval_equal"] = evals["in-containers"] == evals["one-process"]
        result["accuracy"] = {name: {m: e[m]["accuracy"] for m in ("base", "warm", "evolved") if m in e}
                              for name, e in evals.items()}
        if not result["eval_equal"]:
            (work / "evals.json").write_text(json.dumps(evals, indent=1))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            subprocess.run(["podman", "container", "prune", "-f"], capture_output=True)
    ok = result.get("eval_equal") is True and result["gpu_phase_runs"]["ok"]
    result["passed"] = ok
    write_results(result)
    print(json.dumps(result, indent=1))
    if args.keep or not ok:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def gpu_phase_runs(env: dict, image: str) -> dict:
    """Every GPU phase of the round was one completed flow run of the docker pool, each in its own container of
    the image (prefect-docker labels its containers with the flow run's id)."""
    probe = (
        "import json; from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    d = c.read_deployment_by_name('semievol-phase/gpu')\n"
        "    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId\n"
        "    rs = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id])))\n"
        "    print(json.dumps([{'id': str(r.id), 'phase': r.parameters.get('phase'), 'pool': r.work_pool_name,\n"
        "                       'state': r.state.name} for r in rs]))\n")
    runs = json.loads(sh([REPO / ".venv" / "bin" / "python", "-c", probe], env=env).stdout)
    ids = sh(["podman", "ps", "-a", "-q"]).stdout.split()
    fmt = '{{index .Config.Labels "io.prefect.flow-run-id"}} {{.ImageName}}'
    lines = sh(["podman", "inspect", "--format", fmt, *ids]).stdout.splitlines() if ids else []
    image_of = dict(ln.split() for ln in lines if len(ln.split()) == 2)  # flow run id -> image
    phases = sorted(r["phase"] for r in runs)
    in_containers = [r for r in runs if image_of.get(r["id"], "").endswith(image)]
    ok = (set(phases) == GPU_PHASES and len(runs) == len(GPU_PHASES) == len(in_containers)
          and all(r["state"] == "Completed" and r["pool"] == "semievol-gpu" for r in runs))
    return {"ok": ok, "phases": phases, "runs": len(runs), "in_containers": len(in_containers),
            "states": sorted({r["state"] for r in runs})}


def write_results(result: dict) -> None:
    """containers.json keeps the latest run per GPU-pool image (the CPU image, the GPU image)."""
    path = RESULTS / "containers.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    runs[result.get("gpu_pool_image", "none")] = result
    write_json(path, {"benchmark": "containers", "runs": runs})
    lines = ["# Containers end to end (scripts/container_e2e.py)"]
    for image, r in runs.items():
        lines += ["", f"## GPU pool image {image}: {r['date']}, commit {r['commit'][:7]}, {r['machine']}", "",
                  f"passed: {r['passed']}", "", "| step | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in r["seconds"].items()]
        if "image_mb" in r:
            lines += ["", "| image | MB |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in r["image_mb"].items()]
        if "gpu_phase_runs" in r:
            g = r["gpu_phase_runs"]
            lines += ["", f"GPU-pool flow runs: {g['runs']} ({', '.join(g['phases'])}), each in a container of the "
                      f"image: {g['in_containers']}, states: {', '.join(g['states'])}"]
        if "accuracy" in r:
            lines += ["", f"eval.json equal (GPU phases in containers vs the round in one process, same image): "
                      f"{r['eval_equal']}", f"accuracy: {json.dumps(r['accuracy'])}"]
    write_text(RESULTS / "containers.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
