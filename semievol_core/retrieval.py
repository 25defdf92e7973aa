"""In-context propagation's search: a faiss inner-product index over normalised embeddings, and kNN."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .store import atomic_path


def build_index(vectors: np.ndarray) -> faiss.Index:
    # Inner product over unit vectors is cosine similarity.
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def save_index(index: faiss.Index, path: Path) -> Path:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return path


def load_index(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def knn(index: faiss.Index, queries: np.ndarray, k: int, batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row indices) of the k nearest indexed vectors for each query, searched in batches."""
    k = min(k, index.ntotal)
    scores = np.empty((len(queries), k), dtype=np.float32)
    rows = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), batch):
        q = np.ascontiguousarray(queries[s:s + batch], dtype=np.float32)
        scores[s:s + len(q)], rows[s:s + len(q)] = index.search(q, k)
    return scores, rows
