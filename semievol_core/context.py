"""What every phase reads: the config, the validated splits, the round directory and the resolved model."""
from __future__ import annotations

from dataclasses import dataclass, field

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
