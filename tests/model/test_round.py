"""A complete round through the public API with the real model, checked from the outside."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from semievol_core import backends, load_dataset, prompts
from semievol_core.backends.base import GenRequest
from semievol_core.backends.hf import HFEngine
from semievol_core.retrieval import load_index


pytestmark = pytest.mark.model


def nll_tolerance(dtype: str, nll: float) -> float:
    """How far two computations of one mean NLL may differ when their batches differ. In bf16 (dtype auto on a CPU
    with native bf16) the padded batch rounds otherwise than one sequence alone: measured up to 0.037 at a mean NLL
    of 4.2 (16 FPB responses) and 0.010 at 0.11. A response scored one token off or under another adapter is off
    by more than 1."""
    return {"float32": 1e-5, "bfloat16": max(0.03, 0.03 * nll)}[dtype]


def _manifest(result) -> dict:
    return json.loads((result.path / "manifest.json").read_text())


def test_every_file_present_and_readable(fpb_round):
    _, result = fpb_round
    root = result.path
    for adapter in ("warm_adapter", "evolved_adapter"):
        assert (root / adapter / "adapter_config.json").is_file()
        assert (root / adapter / "adapter_model.safetensors").is_file()
    assert load_index(root / "retrieval" / "labeled.faiss").ntotal == 16
    neighbors = pd.read_parquet(root / "retrieval" / "neighbors.parquet")
    assert len(neighbors) == 32 and all(len(n) == 3 for n in neighbors["neighbor_ids"])
    cand = pd.read_parquet(root / "candidates.parquet")
    assert {"id", "config", "warm", "shots", "response", "answer"} <= set(cand.columns)
    assert len(cand) == 32 * 4 and cand.groupby("id").size().eq(4).all()
    pl = pd.read_parquet(root / "pseudo_labels.parquet")
    assert {"pseudo_response", "answer", "agreement", "justified", "nll", "selected"} <= set(pl.columns)
    for name in ("manifest.json", "selection.json", "justify.json", "metrics.json", "eval.json"):
        json.loads((root / name).read_text())
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["phases"]) >= {"warm_up", "retrieve", "collaborate", "justify", "select", "evolve",
                                       "evaluate", "report"}
    assert set(manifest["fingerprints"]) == {"labeled", "unlabeled", "test"}
    assert manifest["backends"] == {"generator": "hf", "trainer": "peft",
                                    "transformers_dtype": backends.resolve_dtype(fpb_round[0].model)}
    assert cand["response"].str.len().gt(0).mean() > 0.9
    assert not list(root.rglob(".*tmp-*"))  # no temporary leftovers


def test_counts_and_tau(fpb_round):
    cfg, result = fpb_round
    pl = pd.read_parquet(result.path / "pseudo_labels.parquet")
    sel = json.loads((result.path / "selection.json").read_text())
    just = json.loads((result.path / "justify.json").read_text())
    assert sel["selected"] <= sel["pool"] == len(pl) <= 32
    assert just["pseudo_labeled"] + just["dropped_no_answer"] == 32
    assert just["agreed"] + just["justified"] == 32
    assert pl["selected"].sum() == sel["selected"] and len(pl) > 0
    assert sel["tau"] == pytest.approx(np.percentile(pl["nll"], cfg.method.theta), abs=1e-12)
    assert (pl.loc[pl["selected"], "nll"] <= sel["tau"]).all()
    assert (pl.loc[~pl["selected"], "nll"] > sel["tau"]).all()
    assert pl["answer"].isin(["A", "B", "C"]).all()  # no empty label ever
    # agreement means every configuration gave that answer
    for _, row in pl[pl["agreement"]].iterrows():
        assert set(row["candidate_answers"]) == {row["answer"]}


def test_stored_nll_matches_an_independent_forward_pass(fpb_round, samples):
    cfg, result = fpb_round
    manifest = _manifest(result)
    model_path, dtype = manifest["model_path"], manifest["backends"]["transformers_dtype"]
    tok = AutoTokenizer.from_pretrained(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(base, str(result.path / "warm_adapter")).eval()
    unlabeled = load_dataset(samples / "fpb" / "unlabeled.csv").by_id()
    pl = pd.read_parquet(result.path / "pseudo_labels.parquet").head(4)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for rid, response, stored in zip(pl["id"], pl["pseudo_response"], pl["nll"]):
        messages = prompts.inference_messages(unlabeled[rid], "choice")
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        r_ids = tok(response, add_special_tokens=False).input_ids + [end]
        ids = torch.tensor([p_ids + r_ids])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
        targets = torch.tensor(r_ids)
        nll = -logp[len(p_ids) - 1:len(p_ids) + len(r_ids) - 1].gather(1, targets[:, None]).mean().item()
        assert abs(nll - stored) < nll_tolerance(dtype, stored), (rid, nll, stored, dtype)


def test_evolved_adapter_loads_and_changes_greedy_outputs(fpb_round, samples):
    cfg, result = fpb_round
    model_path = _manifest(result)["model_path"]
    engine = HFEngine(model_path, cfg.model, {"evolved": str(result.path / "evolved_adapter")}, progress=False)
    test = load_dataset(samples / "fpb" / "test.csv").records[:8]
    reqs = [GenRequest(prompts.inference_messages(r, "choice"), a, 0.0, 24) for a in (None, "evolved") for r in test]
    out = engine.generate(reqs, seed=0)
    base, evolved = out[:8], out[8:]
    assert base != evolved
    assert sum(o.startswith("Answer: ") for o in evolved) >= 6  # it learned the asked format
    assert not any("assistant" in o or "<|im_" in o for o in out)  # generation stops at end-of-turn


def test_round_card_reports_accuracies(fpb_round):
    _, result = fpb_round
    card = (result.path / "card.md").read_text()
    for needle in ("| base |", "| warm |", "| evolved |", "Pseudo-label accuracy", "selected", "tau"):
        assert needle in card
    pa = result.metrics["pseudo_label_accuracy"]
    assert pa["all"]["n"] >= pa["selected"]["n"] > 0
    assert 0 <= pa["selected"]["accuracy"] <= 1
    ev = result.metrics["evaluation"]
    assert {"base", "warm", "evolved"} == set(ev) and all(v["n"] == 16 for v in ev.values())
    assert ev["warm"]["extraction_failure_rate"] <= 0.25  # the warm-up taught the answer format
    preds = pd.read_parquet(result.path / "eval_predictions.parquet")
    for model, g in preds.groupby("model"):  # the figures are those of the predictions written beside them
        assert ev[model]["accuracy"] == pytest.approx((g["answer"] == g["gold"]).mean())
        assert ev[model]["extraction_failure_rate"] == pytest.approx(g["answer"].isna().mean())


def test_score_shards_through_fsspec_storage_give_the_round_s_nll(fpb_round, tmp_path):
    """Two score-shard runs on a "worker" that sees only the file:// storage (not the round directory); the
    parent pulls their chunks and merges them without loading the model: the same NLL as the round's."""
    import shutil

    from semievol_core import parse_config, remote, select, shards
    from semievol_core.context import RoundContext
    from semievol_core.data import load_splits
    from semievol_core.store import RoundDir
    from tasks.phases import SHARD_INPUTS, run_shard

    cfg, result = fpb_round
    url = (tmp_path / "remote").as_uri()
    raw = cfg.model_dump(mode="json")
    raw["backend"].update(shards=2, checkpoint_records=8, shard_storage=url)
    assert remote.push(result.path, SHARD_INPUTS["select"], url) >= 3  # adapter files and the pseudo-labels
    unseen = tmp_path / "not-mounted" / result.path.name
    for j in (0, 1):
        assert run_shard("select", raw, str(unseen), j, 2)["computed"] >= 1
    assert not unseen.exists()
    parent = tmp_path / "parent" / result.path.name
    shutil.copytree(result.path, parent)
    (parent / "pseudo_labels.parquet").unlink()
    assert remote.pull(url, parent.name, ["shards/score"], parent) >= 4  # chunk files + 2 shard records
    model_path = _manifest(result)["model_path"]
    ctx = RoundContext(parse_config(raw), load_splits(cfg.data), RoundDir(parent), model_path)
    assert shards.pending(select.chunk_plan(ctx), 2) == []
    select.score_and_select(ctx)
    assert ctx.notes["shards_reused"] == ctx.notes["shards"] >= 2
    got = pd.read_parquet(parent / "pseudo_labels.parquet").set_index("id")["nll"]
    want = pd.read_parquet(result.path / "pseudo_labels.parquet").set_index("id")["nll"]
    # other chunks than the round's (8 records, not 256): other batches, so rounding noise only
    dtype = _manifest(result)["backends"]["transformers_dtype"]
    for rid, w in want.items():
        assert abs(got[rid] - w) < max(1e-4, nll_tolerance(dtype, w)), (rid, got[rid], w, dtype)


def test_the_next_round_s_warm_up_is_this_round_s_evolve_and_is_copied(fpb_round, tmp_path):
    """Step 7: labeled + selected becomes the next labeled set, so the next warm-up trains what evolve trained.
    It is copied (the manifest says from where), and a changed recipe trains afresh."""
    from semievol_core.config import parse_config
    from semievol_core.data import load_splits
    from semievol_core.next_round import STANDARD, next_data
    from semievol_core.propagate import WARM_UP
    from semievol_core.round import manifest, prepare, run_phase
    from semievol_core.store import digest

    cfg, result = fpb_round
    splits = load_splits(cfg.data)
    (tmp_path / "pseudo_labels.parquet").write_bytes((result.path / "pseudo_labels.parquet").read_bytes())
    lab, unl, chosen = next_data(splits["labeled"], splits["unlabeled"], tmp_path, "r1")
    assert chosen > 0 and len(pd.read_parquet(lab)) == 16 + chosen

    def warm_up(name: str, **lora) -> dict:
        raw = cfg.model_dump(mode="json")
        raw.update(name=name, lora={**raw["lora"], **lora})
        raw["data"].update(labeled=str(lab), unlabeled=str(unl), test=None, columns=STANDARD.model_dump(),
                           limit_labeled=None, limit_unlabeled=None, limit_test=None)
        ctx = prepare(parse_config(raw))
        ctx.rd.create(manifest(ctx))
        run_phase(ctx, "warm_up", WARM_UP.run)
        return ctx.rd.read_manifest()["phases"]["warm_up"]

    entry = warm_up("fpb-small-r2")
    assert entry["trained_as"] == f"{result.path.name}/evolved_adapter"
    files = ["adapter_config.json", "adapter_model.safetensors"]
    assert digest(result.path / "evolved_adapter", files) == digest(result.path.parent / "fpb-small-r2" /
                                                                    "warm_adapter", files)
    assert "trained_as" not in warm_up("fpb-small-r2-shorter", epochs=0.1)
