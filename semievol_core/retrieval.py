"""In-context propagation's search: a faiss inner-product index over normalised embeddings, and kNN."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np

from .store import atomic_path


def gpus() -> int:
    """GPUs faiss can use: 0 with faiss-cpu, which has no GPU functions at all."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def build_index(vectors: np.ndarray, device: str = "cpu") -> faiss.Index:
    # Inner product over unit vectors is cosine similarity.
    index = faiss.IndexFlatIP(vectors.shape[1])
    if device == "cuda" and gpus():  # faiss-gpu: the same exact search, on every visible GPU
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def save_index(index: faiss.Index, path: Path) -> Path:
    if gpus() and not isinstance(index, faiss.IndexFlat):  # a GPU index is written as its CPU twin
        index = faiss.index_gpu_to_cpu(index)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return path


def load_index(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def knn_stream(index: faiss.Index, encode: Callable[[list[str]], np.ndarray], texts: Iterable[str], k: int,
               batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Embeds and searches `batch` texts at a time and yields (scores, rows) per batch: memory holds one
    batch of texts and vectors whatever the pool's size, so the pool can be a generator over a file."""
    k = min(k, index.ntotal)
    buf: list[str] = []
    for text in texts:
        buf.append(text)
        if len(buf) == batch:
            yield index.search(np.ascontiguousarray(encode(buf), dtype=np.float32), k)
            buf = []
    if buf:
        yield index.search(np.ascontiguousarray(encode(buf), dtype=np.float32), k)
