"""sentence-transformers embedder (all-MiniLM-L6-v2 by default), encoding in batches."""
from __future__ import annotations

import numpy as np

from ..progress import Bar


class SentenceEmbedder:
    def __init__(self, path: str, device: str = "cpu", batch_size: int = 256, progress: bool = True,
                 trust_remote_code: bool = False, allow_pickle: bool = False):
        from sentence_transformers import SentenceTransformer  # ~20 s import: only when used

        self.model = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code,
                                         model_kwargs=None if allow_pickle else {"use_safetensors": True})
        self.batch_size, self.progress = batch_size, progress

    @property
    def dim(self) -> int:
        return self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()

    def encode(self, texts: list[str], desc: str = "embed", show: bool = True) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = Bar(len(texts), desc, "text", self.progress and show)
        for s in range(0, len(texts), self.batch_size):
            chunk = texts[s:s + self.batch_size]
            out[s:s + len(chunk)] = self.model.encode(chunk, batch_size=self.batch_size, normalize_embeddings=True,
                                                      convert_to_numpy=True, show_progress_bar=False)
            bar.update(len(chunk))
        bar.close()
        return out
