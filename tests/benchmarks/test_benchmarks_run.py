"""Every benchmark once at a tiny size, so none of them rots. Their figures are not checked against targets
here (that is what running them on demand is for), only that they run and write complete results. Quality
and throughput run on the tests' tiny model (tests/tiny_model.py): what is under test is the benchmark's own
bookkeeping, and SmolLM2 itself is exercised by tests/model and tests/engines."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args, timeout=1200):
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1].startswith("summary: ")
    return out


def test_scale_tiny(tmp_path):
    _run("benchmarks/scale.py", "--sizes", "300", "600", "--labeled", "100", "--batch", "128", "--out",
         str(tmp_path))
    got = json.loads((tmp_path / "scale.json").read_text())
    assert [r["unlabeled"] for r in got["runs"]] == [300, 600]
    assert all(r["selected"] == r["unlabeled"] // 2 for r in got["runs"])  # theta 50 over distinct NLLs
    assert got["machine"]["cores"] >= 1 and "| 600 |" in (tmp_path / "scale.md").read_text()


def test_quality_tiny(tmp_path, samples, tiny_model):
    def quality(methods, out, *more):
        return _run("benchmarks/quality.py", "--data", str(samples), "--datasets", "fpb", "--methods", *methods,
                    "--limit", "4", "--max-new-tokens", "16", "--model", str(tiny_model), "--runs",
                    str(tmp_path / "runs"), "--out", str(out), *more)

    methods = ["semievol", "no-selection", "sft-steps", "select-per-class", "keep-agreed", "round-2"]
    quality(methods, tmp_path)
    [got] = json.loads((tmp_path / "quality.json").read_text())["studies"]
    assert got["model"] == str(tiny_model)
    fpb = got["datasets"]["fpb"]["semievol"]
    assert fpb["counts"] == {"labeled": 4, "unlabeled": 12, "test": 4}
    for model in ("vanilla", "sft", "evolved"):
        acc = fpb[model]
        assert acc["n"] == 4 and acc["ci95"][0] <= acc["accuracy"] <= acc["ci95"][1]
    assert len(fpb["nll"]["correct"]) + len(fpb["nll"]["wrong"]) == fpb["pseudo_label_accuracy"]["all"]["n"]
    assert fpb["commit"] and fpb["date"]
    for model in ("vanilla", "sft", "evolved"):  # the answers given, per model, and each item's outcome
        acc = fpb[model]
        assert sum(acc["answers"].values()) == 4 and acc["ids"] == fpb["vanilla"]["ids"]
        assert sum(acc["correct"]) == round(4 * acc["accuracy"])
        assert acc["extraction_failure_rate"] == acc["answers"].get("none", 0) / 4
    # the control: the warm-up alone, as many optimizer steps as the evolve phase took (4 labeled + selected)
    control = got["datasets"]["fpb"]["sft-steps"]
    steps = fpb["optimizer_steps"]
    assert control["optimizer_steps"] == steps["evolve"] > steps["warm_up"] and control["sft"]["n"] == 4
    manifest = json.loads((tmp_path / "runs" / control["round"] / "manifest.json").read_text())
    assert manifest["config"]["lora"]["epochs"] == control["epochs"] and set(manifest["phases"]) == {
        "warm_up", "evaluate"}
    for other, acc in (("vanilla", fpb["vanilla"]), ("sft", fpb["sft"]), ("sft-steps", control["sft"])):
        pair = got["paired"]["fpb"][f"semievol - {other}"]
        assert pair["difference"] == pytest.approx(fpb["evolved"]["accuracy"] - acc["accuracy"])
        assert pair["n"] == 4 and pair["resamples"] == 10_000
    # every model against SFT on the same items, the majority label's answers included
    maj = got["majority"]["fpb"]
    assert maj["ids"] == fpb["sft"]["ids"] and sum(maj["correct"]) == round(4 * maj["accuracy"])
    for other, acc in (("majority", maj), ("vanilla", fpb["vanilla"]), ("sft-steps", control["sft"]),
                       ("keep-agreed", got["datasets"]["fpb"]["keep-agreed"]["evolved"])):
        pair = got["paired"]["fpb"][f"{other} - sft"]
        assert pair["difference"] == pytest.approx(acc["accuracy"] - fpb["sft"]["accuracy"]) and pair["n"] == 4
    # no-selection and the selection variants: the semievol round's upstream phases, copied; only selection
    # onwards ran again
    assert got["datasets"]["fpb"]["no-selection"]["selection"]["selected"] == fpb["selection"]["pool"]
    for variant in ("no-selection", "select-per-class", "keep-agreed"):
        entry = got["datasets"]["fpb"][variant]
        rd = tmp_path / "runs" / entry["round"]
        phases = json.loads((rd / "manifest.json").read_text())["phases"]
        assert all(phases[p]["reused_from"] == fpb["round"] for p in ("warm_up", "retrieve", "collaborate", "justify"))
        assert all("reused_from" not in phases[p] for p in ("select", "evolve", "evaluate", "report"))
        assert (rd / "candidates.parquet").read_bytes() == (tmp_path / "runs" / fpb["round"] / "candidates.parquet"
                                                             ).read_bytes()
        assert entry["selection"]["pool"] == fpb["selection"]["pool"] and entry["evolved"]["n"] == 4
        assert f"semievol - {variant}" in got["paired"]["fpb"]
    per_class = got["datasets"]["fpb"]["select-per-class"]["selection"]
    assert sum(per_class["selected_per_class"].values()) == per_class["selected"] > 0
    # the second round: the first's labeled + selected as labeled, the rest as unlabeled; its warm model is the
    # first round's evolved one, copied rather than trained again, and it is paired with it
    first, second = got["datasets"]["fpb"]["select-per-class"], got["datasets"]["fpb"]["round-2"]
    assert second["counts"] == {"labeled": 4 + per_class["selected"], "unlabeled": 12 - per_class["selected"],
                                "test": 4}
    phases = json.loads((tmp_path / "runs" / second["round"] / "manifest.json").read_text())["phases"]
    assert phases["warm_up"]["reused_from"] == f"{first['round']}/evolved_adapter"
    assert second["warm"]["correct"] == first["evolved"]["correct"] and second["after"] == "select-per-class"
    pair = got["paired"]["fpb"]["round-2 - select-per-class"]
    assert pair["difference"] == pytest.approx(second["evolved"]["accuracy"] - first["evolved"]["accuracy"])
    row = [ln for ln in (tmp_path / "quality.md").read_text().splitlines() if ln.startswith("| fpb |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    for i, acc in ((2, fpb["vanilla"]), (3, fpb["sft"]), (4, fpb["evolved"]), (5, control["sft"])):
        # the table shows this run's figures
        assert cells[i] == f"{100 * acc['accuracy']:.1f} [{100 * acc['ci95'][0]:.0f}, {100 * acc['ci95'][1]:.0f}]"
    assert maj["label"] in "ABC" and maj["n"] == 4 and maj["accuracy"] in (0, 0.25, 0.5, 0.75, 1)
    for png in ("quality_accuracy.png", "quality_nll.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # A rerun (as after an interruption, results to a fresh --out) reuses the finished round instead of training.
    manifests = [tmp_path / "runs" / e["round"] / "manifest.json" for e in (fpb, control)]
    stamps = [m.stat().st_mtime_ns for m in manifests]
    quality(methods, tmp_path / "again")
    [again] = json.loads((tmp_path / "again" / "quality.json").read_text())["studies"]
    assert again["datasets"] == got["datasets"]
    assert [m.stat().st_mtime_ns for m in manifests] == stamps
    # what self-justify did with the candidates, read from the semievol round's own files
    _run("benchmarks/justify.py", str(tmp_path / "runs" / fpb["round"]), "--out", str(tmp_path))
    study = json.loads((tmp_path / "justify.json").read_text())["rounds"][0]
    summary = json.loads((tmp_path / "runs" / fpb["round"] / "justify.json").read_text())
    classes = study["by_gold_class"]
    # (the round is seeded: its four configurations disagree on some of the 12 records)
    assert 0 < study["justified_records"] <= summary["justified"] and len(study["configurations"]) == 4
    assert sum(c["n"] for k, c in classes.items() if k != "all") == classes["all"]["n"] == study[
        "justified_records"] == sum(study["justified_answers"].values())
    assert all(0 <= c["in_candidates"] <= 1 for c in classes.values())
    # quality.json keeps its results: with the round directories gone, --report-only still tabulates them, and
    # starts no round for a method that has none.
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "quality_accuracy.png").unlink()
    out = quality(["semievol", "no-warmup"], tmp_path, "--report-only")
    [kept] = json.loads((tmp_path / "quality.json").read_text())["studies"]
    assert kept["datasets"] == got["datasets"]
    assert "fpb no-warmup: no result" in out.stdout and not (tmp_path / "runs").exists()
    assert (tmp_path / "quality_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # Another LoRA recipe is a second study beside the first, its rounds named apart; the first is untouched.
    quality(["semievol"], tmp_path, "--epochs", "1")
    studies = json.loads((tmp_path / "quality.json").read_text())["studies"]
    assert [s["recipe"]["epochs"] for s in studies] == [1, 2] and studies[1]["datasets"] == got["datasets"]
    other = studies[0]["datasets"]["fpb"]["semievol"]
    assert other["round"] != fpb["round"] and other["optimizer_steps"]["warm_up"] < fpb["optimizer_steps"]["warm_up"]
    assert other["commit"] and (tmp_path / "runs" / other["round"] / "benchmark.json").is_file()
    md = (tmp_path / "quality.md").read_text()
    assert md.count("## seeded subsample") == 2 and "| model | accuracy | minus SFT |" in md


def test_round_time_tiny(tmp_path, tiny_model):
    """Before and after: HEAD's code from a worktree of its own, then this checkout's, one process each."""
    out = _run("benchmarks/round_time.py", "--limit", "4", "--max-new-tokens", "8", "--model", str(tiny_model),
               "--before", "HEAD", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path))
    got = json.loads((tmp_path / "round_time.json").read_text())
    before, after = got["sides"]
    assert before.endswith(" float32") and after == "this code auto" and len(got["before_commit"]) == 12
    for side in got["sides"]:
        r = got["rounds"][side]
        assert set(r["seconds"]) == {"warm_up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate"}
        assert r["total"] == pytest.approx(sum(r["seconds"].values()), abs=0.2) and r["total"] > 0
        assert all(0 <= a <= 1 for a in r["accuracy"].values())
    assert "| **round** |" in (tmp_path / "round_time.md").read_text() and "x" in out.stdout.splitlines()[-1]
    worktrees = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert "round-time-" not in worktrees


def test_throughput_tiny(tmp_path, tiny_model):
    # The Prefect cached re-run figure is left out here: it is a whole extra round, and the cache itself is
    # tested in tests/prefect/test_round_flow.py.
    _run("benchmarks/throughput.py", "--labeled", "8", "--unlabeled", "4", "--n", "2", "--max-new-tokens", "8",
         "--repeats", "2", "--skip-cached", "--model", str(tiny_model), "--out", str(tmp_path))
    got = json.loads((tmp_path / "throughput.json").read_text())
    hf = got["backends"]["hf"]
    assert hf["requests"] == 8 and hf["configurations"] == 2 and hf["repeats"] == 2 and hf["start_builds_engine"]
    assert got["commit"] and got["load_average_at_start"] is not None and got["model"] == str(tiny_model)
    sec = hf["seconds"]
    assert all(len(sec[k]["runs"]) == 2 and sec[k]["min"] <= sec[k]["median"] <= sec[k]["max"] for k in sec)
    # each ratio is taken per repeat from the timings stored beside it
    keep = [b / p for b, p in zip(sec["bare"]["runs"], sec["phase"]["runs"])]
    # (stored figures keep four significant digits, so a ratio recomputed from them differs by at most ~0.15%)
    assert hf["phase_keeps_of_bare_speed"]["runs"] == pytest.approx(keep, rel=5e-3)
    assert hf["engine_per_phase_speedup"]["min"] > 0 and 0 < hf["scoring_fraction_of_generation"]
    # the seed draws two base configurations at n=2: every request is timed with LoRA enabled and without
    lora = [a / b for a, b in zip(sec["base_lora_on"]["runs"], sec["base_lora_off"]["runs"])]
    assert hf["base_requests"] == 8 and hf["lora_enabled_slowdown"]["runs"] == pytest.approx(lora, rel=5e-3)
    md = (tmp_path / "throughput.md").read_text()
    assert "| hf: one engine per phase vs one per configuration |" in md and "median of 2 repeats" in md
    assert "| hf: 8 requests without an adapter, engine with LoRA enabled vs without" in md


def test_train_step_tiny(tmp_path, tiny_model):
    _run("benchmarks/train_step.py", "--batches", "2", "--batch-size", "2", "--repeats", "2", "--model",
         str(tiny_model), "--out", str(tmp_path))
    got = json.loads((tmp_path / "train_step.json").read_text())
    sec = got["seconds"]
    assert len(sec["full_logits"]["runs"]) == len(sec["response_positions"]["runs"]) == 2
    ratio = [a / b for a, b in zip(sec["full_logits"]["runs"], sec["response_positions"]["runs"])]
    assert got["speedup"]["runs"] == pytest.approx(ratio, rel=5e-3)
    assert got["size"].startswith("2 batches of 2 from fpb/labeled.csv") and got["commit"]
    assert "| loss over every position (transformers) / loss at response positions only" in \
        (tmp_path / "train_step.md").read_text()


def test_engine_start_tiny(tmp_path, tiny_model):
    out = _run("benchmarks/engine_start.py", "--repeats", "2", "--model", str(tiny_model), "--out", str(tmp_path))
    got = json.loads((tmp_path / "engine_start.json").read_text())
    assert got["model"] == str(tiny_model) and got["commit"] and got["load_average_at_start"] is not None
    sec = got["seconds"]
    assert set(sec) == {"hf_with_adapter", "hf_no_adapter", "vllm_with_adapter", "vllm_no_adapter"}
    assert all(len(s["runs"]) == 2 and 0 < s["min"] <= s["median"] <= s["max"] for s in sec.values())
    # vLLM's start builds the engine (KV cache, LoRA slots), which hf's never has to: a start that timed only
    # the wrapper would be as fast as hf's
    assert sec["vllm_with_adapter"]["min"] > sec["hf_with_adapter"]["max"]
    assert set(got["import_s"]) == {"hf", "vllm"}
    # the second repeat runs the designs in reverse order
    order = [ln.split(": ")[1].split()[0] for ln in out.stdout.splitlines() if ln.strip().startswith("repeat ")]
    assert order[:4] == order[4:][::-1] and len(order) == 8
    assert "| vllm |" in (tmp_path / "engine_start.md").read_text()


def test_generation_profile_tiny(tmp_path, tiny_model):
    _run("benchmarks/generation_profile.py", "--repeats", "2", "--sample-batches", "1", "--model", str(tiny_model),
         "--out", str(tmp_path))
    got = json.loads((tmp_path / "generation_profile.json").read_text())
    # the shipped FPB sample: 128 unlabeled records under the round's 4 configurations, batched by 32
    assert got["requests"] == 512 and got["batches"] >= 16 and len(got["configs"]) == 4
    # every prompt of one adapter opens with the chat template's system turn: a prefix cache skips it each time
    assert got["prefix_cache_skips"] > 0 and got["padding_tokens"] >= 0
    s = got["sample"]
    assert s["batches"] == 1 and len(s["seconds"]["generation"]["runs"]) == 2
    share = [f / g for f, g in zip(s["seconds"]["first_token"]["runs"], s["seconds"]["generation"]["runs"])]
    assert s["prefill_share"]["runs"] == pytest.approx(share, rel=5e-3)
    assert all(0 < r < 1 for r in share)  # one new token is cheaper than up to 24
    assert got["commit"] and "| prefill's share of generation |" in (tmp_path / "generation_profile.md").read_text()


def test_recipe_tiny(tmp_path, tiny_model):
    _run("benchmarks/recipe.py", "--recipes", "1e-3:1", "3e-3:0.5", "--model", str(tiny_model), "--out", str(tmp_path))
    got = json.loads((tmp_path / "recipe.json").read_text())
    # the shipped FPB sample's 64 labeled rows: 51 to train on, 13 held out
    assert got["split"] == {"seed": 0, "train": 51, "held_out": 13}
    assert [(r["lr"], r["epochs"]) for r in got["recipes"]] == [(1e-3, 1.0), (3e-3, 0.5)]
    for r in got["recipes"]:
        h = r["held_out"]
        assert h["n"] == 13 and sum(h["answers"].values()) == 13
        assert h["recall"]["macro"] == pytest.approx(sum(h["recall"]["per_class"].values()) / 3)
    assert got["recipes"][0]["optimizer_steps"] == 13  # 51 rows in batches of 4, one epoch
    assert got["majority"]["macro_recall"] == pytest.approx(1 / 3) and got["commit"]
    assert "| 0.001 | 1 | 13 |" in (tmp_path / "recipe.md").read_text()


def test_justify_tune_tiny(tmp_path, tiny_model):
    def tune(*prompts):
        return _run("benchmarks/justify_tune.py", "--recipe", "1e-3:1", "--prompts", *prompts, "--max-new-tokens",
                    "8", "--model", str(tiny_model), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path))

    tune("paper", "tally")
    [got] = json.loads((tmp_path / "justify_tune.json").read_text())["studies"]
    assert got["split"] == {"seed": 0, "train": 51, "held_out": 13} and got["commit"]
    paper, tally = got["variants"]
    assert (paper["prompt"], tally["prompt"]) == ("paper", "tally")
    # the same candidates under both prompts: only self-justify ran again
    assert paper["configurations"] == tally["configurations"] and len(paper["configurations"]) == 4
    assert paper["agreement_rate"] == tally["agreement_rate"]
    for v in (paper, tally):
        classes = v["by_gold_class"]
        assert sum(c["n"] for k, c in classes.items() if k != "all") == classes["all"]["n"] == v["justified_records"]
        assert 0 < v["justified_records"] <= 13 and all(0 <= c["in_candidates"] <= 1 for c in classes.values())
    assert "| tally | 0 | all |" in (tmp_path / "justify_tune.md").read_text()
    # a rerun with one prompt reuses the warm-up and the candidates, and keeps the other prompt's figures
    adapter = next((tmp_path / "runs").glob("justify-tune-*/warm_adapter"))
    stamp = adapter.stat().st_mtime_ns
    tune("tally")
    [again] = json.loads((tmp_path / "justify_tune.json").read_text())["studies"]
    assert [v["prompt"] for v in again["variants"]] == ["paper", "tally"] and again["variants"][0] == paper
    assert again["variants"][1]["by_gold_class"] == tally["by_gold_class"]  # greedy: the same answers again
    assert adapter.stat().st_mtime_ns == stamp
