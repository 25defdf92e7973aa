"""The `semievol` command line: demo, round, evaluate, evolve. Bad input: one line on stderr, exit 2."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fpb-small.yaml"


def _env() -> None:
    # A cold ephemeral Prefect server took 38-47 s to start on 2 cores; Prefect's default 20 s timeout fails.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _config(args):
    """The config, with its data and model validated before any flow starts (bad input: exit 2, no run)."""
    from semievol_core import load_config
    from semievol_core.errors import InputError
    from semievol_core.round import prepare
    cfg = load_config(args.config)
    update = {k: v for k, v in (("name", getattr(args, "name", None)),
                                ("runs_dir", getattr(args, "runs_dir", None))) if v}
    for key, value in update.items():  # validated on assignment; dumping the whole config is not needed
        setattr(cfg, key, value)
    if cfg.backend.shards > 1 and args.command in ("round", "evolve") and not args.gpu_deployment:
        # The flow refuses it too, but only once its run exists.
        raise InputError(args.config, None, "backend.shards",
                         "shards > 1 needs --gpu-deployment, the deployment whose work pool runs the shards")
    prepare(cfg)
    return cfg


def _table(metrics: dict) -> str:
    ev = metrics.get("evaluation") or {}
    lines = [f"{'model':<10} {'test accuracy':>14} {'no answer':>10}"]
    lines += [f"{k:<10} {100 * ev[k]['accuracy']:>13.1f}% {100 * ev[k]['extraction_failure_rate']:>9.1f}%"
              for k in ("base", "warm", "evolved") if k in ev]
    j, s, pa = metrics.get("justify") or {}, metrics.get("selection") or {}, metrics.get("pseudo_label_accuracy")
    lines.append(f"\npseudo-labels: {s.get('pool')} of {j.get('records')} unlabeled "
                 f"(agreement {100 * (j.get('agreement_rate') or 0):.1f}%, dropped {j.get('dropped_no_answer')}), "
                 f"selected {s.get('selected')} at tau {s.get('tau')}")
    if pa:
        sel = pa.get("selected") or {}
        lines.append(f"pseudo-label accuracy (gold, report only): all {_pct(pa['all']['accuracy'])}, "
                     f"selected {_pct(sel.get('accuracy'))}")
    if metrics.get("evolved_vs_warm"):
        from semievol_core.report import difference_line
        lines.append(f"\nevolved - warm: {difference_line(metrics['evolved_vs_warm'])}")
    return "\n".join(lines)


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def cmd_round(args) -> int:
    from flows.round import semievol_round
    metrics = semievol_round(_config(args), gpu_deployment=args.gpu_deployment)
    print(_table(metrics))
    print(f"\nround directory: {metrics['round_dir']}")
    return 0


def cmd_demo(args) -> int:
    from semievol_core import load_config
    cfg = load_config(EXAMPLE)
    cfg = cfg.model_validate({**cfg.model_dump(), "name": args.name or f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                              "runs_dir": args.runs_dir or cfg.runs_dir})
    from flows.round import semievol_round
    metrics = semievol_round(cfg)
    print(_table(metrics))
    print(f"\nround directory: {metrics['round_dir']}")
    print("round card:      card.md in that directory\n"
          "to see the run in the Prefect UI: `prefect server start`, then open http://127.0.0.1:4200/runs\n"
          "(the demo ran on a temporary local server that keeps its records in $PREFECT_HOME, ~/.prefect)")
    return 0


def cmd_evaluate(args) -> int:
    from flows.evaluate import check_adapters, evaluate
    adapters = {"base": None} if not args.no_base else {}
    for item in args.adapter or []:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"semievol: error: --adapter wants NAME=PATH, got {item!r}")
        adapters[name] = path
    cfg = _config(args)
    check_adapters(adapters, cfg.model.allow_pickle)  # before any flow starts, like the config
    result = evaluate(cfg, adapters, args.split, args.out)
    for name, m in result["metrics"].items():
        print(f"{name:<12} accuracy {100 * m['accuracy']:.1f}%  no answer {100 * m['extraction_failure_rate']:.1f}%"
              f"  (n={m['n']})")
    print(f"written to {result['out']}")
    return 0


def cmd_evolve(args) -> int:
    from flows.evolve import EvolveParams, evolve_continuous, evolve_iterative
    params = EvolveParams(round=_config(args), mode=args.mode, max_rounds=args.rounds, min_gain=args.min_gain,
                          name=args.evolve_name, gpu_deployment=args.gpu_deployment)
    if args.mode == "iterative":
        for i, m in enumerate(evolve_iterative(params), 1):
            print(f"--- round {i}: {m['round_dir']}\n{_table(m)}")
    else:
        state = evolve_continuous(params)
        if state.get("skipped"):
            print(f"skipped, the rows wait for the next run: {state['skipped']}")
        print(f"rounds so far: {len(state['rounds'])}; incumbent: {state['incumbent']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semievol", description="SemiEvol semi-supervised fine-tuning on Prefect.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="a small round on the shipped FPB sample with the embedded SmolLM2")
    d.add_argument("--runs-dir", help="where round directories go (default: runs/ in the working directory)")
    d.add_argument("--name", help="round name (default: demo-<time>)")
    d.set_defaults(func=cmd_demo)

    def common(sp):
        sp.add_argument("--config", required=True, help="round config YAML (see examples/fpb-small.yaml)")
        sp.add_argument("--runs-dir", help="override runs_dir from the config")

    r = sub.add_parser("round", help="run one round from a config file")
    common(r)
    r.add_argument("--name", help="round name (default: from the config, else <time>-<random>)")
    r.add_argument("--gpu-deployment", help="run GPU phases as runs of this deployment, e.g. semievol-phase/gpu")
    r.set_defaults(func=cmd_round)

    e = sub.add_parser("evaluate", help="evaluate the base model and adapters on a split")
    common(e)
    e.add_argument("--adapter", action="append", metavar="NAME=PATH", help="an adapter to evaluate (repeatable)")
    e.add_argument("--no-base", action="store_true", help="skip the base model")
    e.add_argument("--split", default="test", choices=["test", "labeled", "unlabeled"], help="split (default test)")
    e.add_argument("--out", help="output directory (default runs_dir/eval-<time>)")
    e.set_defaults(func=cmd_evaluate)

    v = sub.add_parser("evolve", help="several rounds: iterative, or continuous over newly arrived rows")
    common(v)
    v.add_argument("--mode", choices=["iterative", "continuous"], default="iterative", help="default iterative")
    v.add_argument("--rounds", type=int, default=3, help="iterative: most rounds (default 3)")
    v.add_argument("--min-gain", type=float, default=0.0,
                   help="iterative: stop unless accuracy gains more; continuous: promote only if it beats the "
                        "incumbent by more (default 0)")
    v.add_argument("--evolve-name", default="evolve", help="state directory under runs_dir (default evolve)")
    v.add_argument("--gpu-deployment", help="run each round's GPU phases as runs of this deployment")
    v.set_defaults(func=cmd_evolve)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    _env()
    from pydantic import ValidationError

    from semievol_core.errors import BusyError, InputError
    try:
        return args.func(args)
    except InputError as err:
        print(f"semievol: error: {err}", file=sys.stderr)
        return 2
    except BusyError as err:
        print(f"semievol: busy: {err}", file=sys.stderr)
        return 3
    except ValidationError as err:
        first = err.errors()[0]
        print(f"semievol: error: {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
