"""Runs one SemiEvol round from a YAML config through the library API and prints the round card.

    python examples/round.py [examples/fpb-small.yaml]
"""
import sys
from pathlib import Path

from semievol_core import InputError, load_config, run_round


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("fpb-small.yaml")
    try:
        result = run_round(load_config(path))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((result.path / "card.md").read_text())
    print(f"round directory: {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
