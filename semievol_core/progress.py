"""Progress of long work: a tqdm bar on the terminal, and listeners that an orchestrator can attach
(the Prefect layer turns them into progress artifacts) without this library knowing about it."""
from __future__ import annotations

from typing import Callable

from tqdm.auto import tqdm

Listener = Callable[[str, int, int, dict], None]  # (desc, done, total, stats)
_listeners: list[Listener] = []


def add_listener(fn: Listener) -> None:
    _listeners.append(fn)


def remove_listener(fn: Listener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


class Bar:
    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True):
        self.total, self.desc, self.done, self.stats = total, desc, 0, {}
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled)

    def update(self, n: int = 1, **stats) -> None:
        self.done += n
        self._bar.update(n)
        if stats:
            self.stats.update(stats)
            self._bar.set_postfix(**stats)
        for fn in list(_listeners):
            fn(self.desc, self.done, self.total, dict(self.stats))

    def close(self) -> None:
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
