"""The protocols every backend implements. They are narrow on purpose (messages in, texts or NLLs out; examples
in, a verified adapter directory out), so the method's phases never see which engine or trainer runs them and
hf/peft (CPU, any GPU) and vLLM/LLaMA-Factory (GPU throughput) stay swappable by config alone."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

Messages = list[dict]


@dataclass(frozen=True)
class GenRequest:
    messages: Messages
    adapter: str | None = None  # name of a loaded adapter; None = the base model
    temperature: float = 0.0  # 0 = greedy
    max_new_tokens: int = 64


@dataclass(frozen=True)
class ScoreRequest:
    messages: Messages
    response: str
    adapter: str | None = None


class Generator(Protocol):
    def start(self, seed: int) -> None:
        """Load the model and adapters now rather than on the first call, so that start-up can be timed or
        failed early; a backend whose constructor already loads them does nothing. On vLLM-CPU the engine's
        sampling seed is fixed here."""

    def generate(self, requests: list[GenRequest], seed: int, desc: str = "generate") -> list[str]:
        """One text per request. The whole phase goes in one call so the backend can batch across configs."""


class Scorer(Protocol):
    def score(self, requests: list[ScoreRequest], desc: str = "score") -> list[float]:
        """Mean negative log-likelihood of each response's tokens (end-of-turn included), teacher-forced."""


class Trainer(Protocol):
    def train(self, examples: list[tuple[Messages, str]], out_dir: Path) -> Path:
        """LoRA on the base model over (prompt messages, target response); returns a verified adapter dir."""


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 matrix, one row per text."""
