"""What every benchmark result records about the machine it ran on, and where results go."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from semievol_core.store import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str | None:
    """The checkout's commit, with "+dirty" when tracked files differ from it; None outside a git checkout."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def load_average() -> float | None:
    """The 1-minute load average when a measurement starts: figures taken on a busy machine say so."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": mem, "gpu": gpu,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def save(name: str, out_dir: Path, result: dict, markdown: str) -> tuple[Path, Path]:
    """<name>.json and <name>.md under out_dir, each written atomically."""
    out_dir = Path(out_dir)
    j = write_json(out_dir / f"{name}.json", result)
    m = write_text(out_dir / f"{name}.md", markdown)
    return j, m



def machine_line(m: dict) -> str:
    """The machine as a markdown header states it: "2 cores, <cpu>, GPU none"."""
    return f"{m['cores']} cores, {m['cpu']}, GPU {m['gpu'] or 'none'}"


def header(result: dict) -> str:
    """Machine, date, commit and starting load of a result, for the parenthesis after a table's title."""
    parts = [f"{machine_line(result['machine'])}; {result['machine']['date']}"]
    if "commit" in result:
        parts.append(f"commit {result['commit'] or '-'}")
    if "load_average_at_start" in result:
        parts.append(f"load average {result['load_average_at_start']} at the start")
    return ", ".join(parts)
