"""Tokens for a run (a hub token, storage keys) come from Prefect Secret blocks into the environment of the
process that needs them, never through the config, the logs or the round directory."""
from __future__ import annotations

import os
import re

from prefect import get_run_logger

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def apply_secret_env(secret_env: dict[str, str] | None) -> None:
    """Sets each environment variable from the Secret block named for it, e.g. {"HF_TOKEN": "hf-token"}."""
    if not secret_env:
        return
    from prefect.blocks.system import Secret
    for var, block in secret_env.items():
        if not _ENV_NAME.fullmatch(var):  # fullmatch: "$" would let a trailing newline through
            raise ValueError(f"secret_env: {var!r} is not an environment variable name")
        os.environ[var] = str(Secret.load(block).get())
    get_run_logger().info("environment set from secret blocks: %s", ", ".join(sorted(secret_env)))
