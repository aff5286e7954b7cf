"""TF-IDF + truncated SVD: a light text embedding with no model weights (scikit-learn).

The vectoriser and the SVD are fitted on the corpus being embedded, so one text's vector depends
on every other text. The embedder therefore carries a hash of its corpus in its `key` and opts out
of the per-text cache (`cacheable = False`): refitting is cheap, and a cached vector from another
corpus would silently live in a different space.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from h2rec.text.base import Embedder, EmbeddingError, l2_normalize, texts_sha256

log = logging.getLogger("h2rec")


class TfidfSvdEmbedder(Embedder):
    """Fit on a corpus (`fit`, or the first `embed` call), then project any text into `dim` dims.

    The pipeline fits on exactly the texts it embeds, so `key` describes the vectors it returns.
    """

    cacheable = False

    def __init__(
        self,
        dim: int = 256,
        *,
        seed: int = 0,
        normalize: bool = True,
        max_features: int | None = 50_000,
        ngram_max: int = 1,
    ) -> None:
        self.requested_dim = dim
        self.seed = seed
        self.normalize = normalize
        self.max_features = max_features
        self.ngram_max = ngram_max
        self._vec: Any = None
        self._svd: Any = None
        self._dim: int | None = None
        self._corpus: str | None = None

    @property
    def key(self) -> str:
        if self._corpus is None:
            raise EmbeddingError("TfidfSvdEmbedder has no key before it is fitted on a corpus")
        norm = "norm" if self.normalize else "raw"
        return f"tfidf-svd:{self._dim}:seed{self.seed}:corpus{self._corpus[:12]}:{norm}"

    @property
    def dim(self) -> int | None:
        return self._dim

    def fit(self, corpus: Sequence[str]) -> None:
        """Learn vocabulary, IDF and the SVD basis; `dim` is capped by vocabulary and corpus size.

        Refitting on the same corpus is skipped, so fit-then-embed in the pipeline costs one fit.
        """
        corpus_hash = texts_sha256(corpus)
        if self._vec is not None and corpus_hash == self._corpus:
            return
        try:
            from sklearn.decomposition import TruncatedSVD
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError as exc:
            raise EmbeddingError(
                "kind=tfidf needs scikit-learn (pip install 'h2rec[text]')"
            ) from exc
        vec = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=(1, self.ngram_max),
            sublinear_tf=True,
            dtype=np.float32,
        )
        try:
            x = vec.fit_transform(list(corpus))
        except ValueError as exc:  # "empty vocabulary"
            raise EmbeddingError(
                f"TF-IDF found no words in {len(corpus)} texts ({exc}); the items need text"
            ) from exc
        n_docs, n_terms = x.shape
        if n_terms < 2:
            raise EmbeddingError(f"TF-IDF vocabulary has {n_terms} term; SVD needs at least 2")
        dim = min(self.requested_dim, n_terms, n_docs)
        if dim < self.requested_dim:
            log.info(
                "tfidf: dim capped at %d (%d terms, %d texts; asked %d)",
                dim,
                n_terms,
                n_docs,
                self.requested_dim,
            )
        svd = TruncatedSVD(n_components=dim, algorithm="randomized", random_state=self.seed)
        svd.fit(x)
        self._vec, self._svd, self._dim = vec, svd, dim
        self._corpus = corpus_hash

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._vec is None:
            self.fit(texts)
        out = np.asarray(self._svd.transform(self._vec.transform(list(texts))), dtype=np.float32)
        return l2_normalize(out) if self.normalize else out
