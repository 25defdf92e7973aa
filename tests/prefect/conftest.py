"""A real Prefect server, started once for the whole test session on a free loopback port."""
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="semievol-prefect-"))
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    PORT = _s.getsockname()[1]
API = f"http://127.0.0.1:{PORT}/api"
# Set before anything imports prefect, so every client in this session talks to this server.
os.environ.update({"PREFECT_HOME": str(_HOME / "home"), "PREFECT_API_URL": API,
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "SEMIEVOL_RESULTS": str(_HOME / "results"),
                   "PREFECT_LOGGING_LEVEL": "INFO"})
PREFECT = str(Path(sys.executable).with_name("prefect"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def prefect_server():
    log = open(_HOME / "server.log", "wb")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(PORT)],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + 180  # a cold start took 38-47 s on 2 idle cores; room for a loaded machine
    while True:
        try:
            with urllib.request.urlopen(f"{API}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"prefect server did not start; see {_HOME / 'server.log'}")
        time.sleep(1)
    yield {"api": API, "ui": f"http://127.0.0.1:{PORT}", "home": _HOME}
    from prefect.logging.handlers import APILogHandler
    APILogHandler().flush()  # send the last run logs while the server is still up
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _copy_rows(src: Path, dst: Path, n: int) -> Path:
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows, cols = list(reader)[:n], reader.fieldnames
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return dst


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, samples):
    """FPB: 8 labeled, 12 unlabeled, 8 test, as files of their own (a test edits the unlabeled one)."""
    d = tmp_path_factory.mktemp("data")
    for split, n in (("labeled", 8), ("unlabeled", 12), ("test", 8)):
        _copy_rows(samples / "fpb" / f"{split}.csv", d / f"{split}.csv", n)
    return d


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, samples):
    """FPB: 8 labeled, 6 unlabeled, 4 test, for the tests about where, when and how often phases run (crashes,
    dispatch), which start many processes and rounds."""
    d = tmp_path_factory.mktemp("tiny")
    for split, n in (("labeled", 8), ("unlabeled", 6), ("test", 4)):
        _copy_rows(samples / "fpb" / f"{split}.csv", d / f"{split}.csv", n)
    return d
