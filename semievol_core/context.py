"""What every phase reads: the config, the validated splits, the round directory and the resolved model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import RoundConfig
from .data import Dataset
from .store import RoundDir


@dataclass
class RoundContext:
    cfg: RoundConfig
    splits: dict[str, Dataset]
    rd: RoundDir
    model_path: str
    notes: dict = field(default_factory=dict)  # what a phase reports beyond its files; goes to the manifest

    @property
    def task(self) -> str:
        return self.cfg.data.task

    def warm_adapter(self) -> str | None:
        """The warm adapter's path when warm-up ran, else None (the base model stands in for it)."""
        return str(self.rd.warm_adapter) if self.cfg.method.warmup and self.rd.warm_adapter.is_dir() else None


@dataclass(frozen=True)
class Phase:
    """A phase of the round, declared once beside its code. The Prefect layer keys its cache on what is declared
    here, so a config field a phase reads but does not declare would let a changed config reuse a stale result;
    tests/unit/test_phase_declarations.py runs every phase and fails on a read that is not declared."""
    name: str
    run: Callable[[RoundContext], list[Path]]
    reads: tuple[str, ...]  # config fields, dotted; a section stands for everything in it
    splits: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()  # earlier phases whose files it reads
    outputs: tuple[str, ...] = ()  # RoundDir attributes it writes (when it runs at all)
