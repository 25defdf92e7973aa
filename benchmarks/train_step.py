"""Training step: the peft trainer's loss (the output layer at response positions only) against the loss
transformers computes from the same labels over every position, on the same LoRA model and batches; forward and
backward, timed per repeat in alternating order.

    python benchmarks/train_step.py                                   # the shipped FPB sample
    python benchmarks/train_step.py --data ../shared/data/semievol/fpb --batches 12

Both paths give the same loss and gradients (tests/model/test_training_loss.py); this measures what the
restriction saves. Writes train_step.json and train_step.md under --out."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.throughput import alternating, spread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def batches(tok, labeled: Path, count: int, size: int):
    from semievol_core.backends.peft import collate, example_features
    from semievol_core.data import load_dataset
    from semievol_core.prompts import training_example
    records = load_dataset(str(labeled), task="choice", require_answers=True).records[:count * size]
    if len(records) < count * size:
        raise SystemExit(f"{labeled}: {len(records)} rows, {count * size} needed for {count} batches of {size}")
    feats = [example_features(tok, *training_example(r, "choice", r.answer)) for r in records]
    out = [collate(feats[i:i + size], tok.pad_token_id) for i in range(0, len(feats), size)]
    return out, statistics.mean(len(x) for x, _ in feats), statistics.mean(sum(t != -100 for t in y) for _, y in feats)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb")
    p.add_argument("--batches", type=int, default=6, help="batches per timing")
    p.add_argument("--batch-size", type=int, default=8, help="lora.batch_size's default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", default=None, help="the base model (model.base); the embedded SmolLM2 if unset")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from semievol_core.backends.hf import load_model, load_tokenizer
    from semievol_core.backends.peft import response_loss, with_lora
    from semievol_core.config import LoraParams, ModelConfig
    from semievol_core.models import resolve_model
    cfg = ModelConfig() if args.model is None else ModelConfig(base=args.model)
    path = resolve_model(cfg)
    tok = load_tokenizer(path, cfg)
    lp = LoraParams()
    model = with_lora(load_model(path, cfg), lp)
    model.train()
    data, tokens, targets = batches(tok, args.data / "labeled.csv", args.batches, args.batch_size)
    result = {"benchmark": "train_step", "machine": describe(), "commit": commit(), "model": cfg.base,
              "load_average_at_start": load_average(), "repeats": args.repeats,
              "size": f"{args.batches} batches of {args.batch_size} from {args.data.name}/labeled.csv, "
                      f"{tokens:.0f} tokens per example of which {targets:.1f} are trained on, LoRA r{lp.rank}"}

    def full():
        for ids, mask, labels in data:
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()

    def ours():
        for ids, mask, labels in data:
            response_loss(model, ids, mask, labels).backward()

    seconds = alternating({"full_logits": full, "response_positions": ours}, args.repeats, after=model.zero_grad)
    result["seconds"] = {k: spread(v) for k, v in seconds.items()}
    result["speedup"] = spread([a / b for a, b in zip(seconds["full_logits"], seconds["response_positions"])])
    s, t = result["speedup"], result["seconds"]
    md = (f"Training step ({header(result)}): {result['size']}; "
          f"the median of {args.repeats} repeats in alternating order, [min, max]\n\n"
          "| figure | value |\n|---|---|\n"
          f"| loss over every position (transformers) / loss at response positions only (the trainer), forward + "
          f"backward | {s['median']:.2f}x [{s['min']:.2f}x, {s['max']:.2f}x] "
          f"({t['full_logits']['median']} s vs {t['response_positions']['median']} s) |\n")
    save("train_step", args.out, result, md)
    print(md)
    print(f"summary: the trainer's step is {s['median']:.2f}x faster than transformers' full-logits loss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
