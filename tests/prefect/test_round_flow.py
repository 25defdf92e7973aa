"""The round flow against a real Prefect server: end to end, fully cached, partly re-run, self-healing."""
import shutil

import pandas as pd
import pytest
from helpers import artifacts, small_config, task_states

from flows.round import semievol_round
from semievol_core import parse_config

pytestmark = pytest.mark.prefect
PHASES = ["warm-up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate"]


@pytest.fixture(scope="module")
def first_run(prefect_server, small_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    raw = small_config(small_data, runs, "pf")
    # Inputs of its own (the warm-up's key has the LoRA seed, the rest the method seed): rounds of other
    # test modules must not pre-fill this cache.
    raw["method"]["seed"] = raw["lora"]["seed"] = 1
    cfg = parse_config(raw)
    state = semievol_round(cfg, return_state=True)
    assert state.is_completed(), state.message
    return cfg, runs, state.state_details.flow_run_id, state.result()


def test_round_completes_with_artifacts(first_run):
    cfg, runs, run_id, metrics = first_run
    assert set(task_states(run_id)) == set(PHASES)
    assert all(s == "Completed" for s in task_states(run_id).values())
    assert {"base", "warm", "evolved"} == set(metrics["evaluation"])
    keys = {a.key for a in artifacts(run_id)}
    assert {"semievol-round-card", "semievol-metrics", "semievol-nll-histogram"} <= keys
    kinds = {a.type for a in artifacts(run_id)}
    assert "progress" in kinds  # generation and training report progress while they run
    card = next(a for a in artifacts(run_id) if a.key == "semievol-round-card")
    assert "SemiEvol round `pf`" in card.data and "| evolved |" in card.data
    assert (runs / "pf" / "nll_histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_same_inputs_are_all_cached(first_run):
    cfg, runs, _, metrics = first_run
    state = semievol_round(cfg, return_state=True)
    assert state.is_completed()
    assert task_states(state.state_details.flow_run_id) == {p: "Cached" for p in PHASES}
    assert state.result()["evaluation"] == metrics["evaluation"]


def test_cache_hit_with_missing_files_is_recomputed(first_run):
    cfg, runs, _, _ = first_run
    index = runs / "pf" / "retrieval" / "labeled.faiss"
    index.unlink()
    state = semievol_round(cfg, return_state=True)
    assert state.is_completed() and index.is_file()
    # the rebuilt index has the same content, so everything downstream stays cached
    states = task_states(state.state_details.flow_run_id)
    assert states["collaborate"] == "Cached" and states["evolve"] == "Cached"


def test_a_new_round_name_reuses_the_cache(first_run):
    cfg, runs, _, _ = first_run
    other = cfg.model_copy(update={"name": "pf-copy"})
    state = semievol_round(other, return_state=True)
    assert set(task_states(state.state_details.flow_run_id).values()) == {"Cached"}
    assert (runs / "pf-copy" / "evolved_adapter" / "adapter_model.safetensors").is_file()
    assert (runs / "pf-copy" / "card.md").read_text().count("cached (round pf)") == len(PHASES)


def test_changing_one_unlabeled_row_reruns_only_what_depends_on_it(first_run, small_data, tmp_path):
    cfg, runs, _, _ = first_run
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    df = pd.read_csv(data / "unlabeled.csv")
    df.loc[3, "question"] = df.loc[3, "question"] + " Shares fell sharply afterwards."
    df.to_csv(data / "unlabeled.csv", index=False)
    changed = cfg.model_copy(update={"data": cfg.data.model_copy(update={"unlabeled": str(data / "unlabeled.csv")})})
    state = semievol_round(changed, return_state=True)
    assert state.is_completed()
    states = task_states(state.state_details.flow_run_id)
    assert states["warm-up"] == "Cached"
    for phase in ("retrieve", "collaborate", "justify", "select", "evolve"):
        assert states[phase] == "Completed", (phase, states)
