"""The machine header every benchmark's markdown opens with: one function, so that a result measured on a busy
machine or a modified checkout says so in every table the same way."""
from benchmarks.machine import header, machine_line

MACHINE = {"cores": 2, "cpu": "AMD EPYC", "gpu": None, "date": "2026-12-03"}


def test_header_states_machine_date_commit_and_load():
    r = {"machine": MACHINE, "commit": "abc123+dirty", "load_average_at_start": 1.5}
    assert header(r) == "2 cores, AMD EPYC, GPU none; 2026-12-03, commit abc123+dirty, load average 1.5 at the start"


def test_a_result_outside_git_says_so_and_older_results_omit_what_they_never_recorded():
    assert header({"machine": MACHINE, "commit": None}) == "2 cores, AMD EPYC, GPU none; 2026-12-03, commit -"
    assert header({"machine": MACHINE}) == "2 cores, AMD EPYC, GPU none; 2026-12-03"


def test_a_gpu_is_named():
    assert machine_line({**MACHINE, "gpu": "NVIDIA H200"}) == "2 cores, AMD EPYC, GPU NVIDIA H200"
