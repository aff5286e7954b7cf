"""RQ-VAE as in TIGER and H2Rec: MLP autoencoder with residual quantisation of the latent.

    z = E(x);  r_1 = z;  c_l = nearest(r_l, C_l);  e_l = C_l[c_l];  r_{l+1} = r_l - sg(e_l)
    z_q = sum_l e_l;  x_hat = D(z + sg(z_q - z))           (straight-through estimator)
    loss = ||x - x_hat||^2 + sum_l [ ||sg(r_l) - e_l||^2 + beta * ||r_l - sg(e_l)||^2 ]

Squared norms are summed over dimensions and averaged over the batch, as written above (TIGER;
EdoardoBotta sums the levels; LC-Rec averages them). `nearest` is the method's distance rule
(`h2rec.sid.kmeans`): squared L2, or cosine on the codeword's direction. With cosine the inputs
are L2-normalised too; the latent is not (the codebook loss pulls each codeword towards the mean
residual it serves, matching the RQ-KMeans cosine codewords).

* k-means initialisation: before training, each level's codebook is k-means on *all* training
  residuals of that level under the freshly initialised encoder (cheap at 10k-60k items and more
  stable than LC-Rec's first batch). Without it codewords start U(-1/K, 1/K) (VQ-VAE).
* Dead-code restarts: after every epoch (the last one included, so a fit does not end with a
  level left dead), codes that no training item used during the epoch are re-seeded with
  randomly chosen current residuals of that level (so each lands where data is).
* Determinism: weight init runs under `torch.random.fork_rng` seeded with `seed` (the global
  torch RNG is left untouched), shuffling uses its own generator, k-means is seeded; the same
  seed and thread count give bit-identical codes on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import safetensors.torch as st_torch
import torch
from torch import nn

from h2rec.progress import progress_enabled
from h2rec.sid.base import Tokenizer, TokenizerError
from h2rec.sid.kmeans import assign, distances, fit_codebook

MODEL_FILE = "model.safetensors"


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAEModule(nn.Module):
    """Encoder, decoder and the L x K x d_c codebook tensor (a plain parameter)."""

    def __init__(
        self, input_dim: int, hidden: list[int], latent_dim: int, levels: int, k: int
    ) -> None:
        super().__init__()
        self.encoder = _mlp([input_dim, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), input_dim])
        self.codebooks = nn.Parameter(torch.zeros(levels, k, latent_dim))

    def nearest(self, r: torch.Tensor, level: int, distance: str) -> torch.Tensor:
        """Code of each residual row at `level` (argmin over K; ties go to the lowest index)."""
        e = self.codebooks[level].detach()
        if distance == "euclidean":
            d = (e * e).sum(1)[None, :] - 2.0 * r @ e.T
            return d.argmin(dim=1)
        norms = e.norm(dim=1).clamp_min(1e-12)
        return (r @ (e / norms[:, None]).T).argmax(dim=1)

    def quantise(
        self, z: torch.Tensor, distance: str, beta: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(z_q, codes [n, L], quantisation loss, residuals r_1..r_L)."""
        r = z
        zq = torch.zeros_like(z)
        loss = z.new_zeros(())
        codes, residuals = [], []
        for level in range(self.codebooks.shape[0]):
            residuals.append(r)
            c = self.nearest(r.detach(), level, distance)
            e = self.codebooks[level][c]
            loss = loss + ((r.detach() - e) ** 2).sum(1).mean()
            loss = loss + beta * ((r - e.detach()) ** 2).sum(1).mean()
            zq = zq + e
            r = r - e.detach()
            codes.append(c)
        return zq, torch.stack(codes, dim=1), loss, residuals


@contextmanager
def _epoch_bar(total: int) -> Iterator[Any]:
    """A rich bar over epochs when progress is enabled (CLI); a no-op in library use."""
    if not progress_enabled():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as p:
        task = p.add_task("RQ-VAE epochs", total=total)
        yield lambda: p.advance(task)


class RQVAETokenizer(Tokenizer):
    """Trainable RQ-VAE; `history` holds one dict of mean losses per epoch."""

    method = "rqvae"

    def __init__(self, cfg: Any = None) -> None:
        super().__init__(cfg)
        self.module: RQVAEModule | None = None
        self.history: list[dict[str, float]] = []
        self._gen: torch.Generator | None = None
        self._warm = False
        self._epochs = self.cfg.epochs

    # ---- training ------------------------------------------------------------------------------
    def fit(self, x: Any, *, warm_start: bool = False, epochs: int | None = None) -> RQVAETokenizer:
        """Train from scratch, or with `warm_start=True` continue training the current model.

        `epochs` overrides `cfg.epochs` for this call (handy for warm starts and benchmarks).
        """
        self._warm = warm_start
        self._epochs = self.cfg.epochs if epochs is None else epochs
        if warm_start:
            self._require_fitted()
        try:
            super().fit(x)
        finally:
            self._warm, self._epochs = False, self.cfg.epochs
        return self

    def _fit(self, x: np.ndarray) -> None:
        cfg = self.cfg
        xt = torch.from_numpy(x)
        if not self._warm or self.module is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                self.module = RQVAEModule(
                    x.shape[1], list(cfg.hidden), cfg.latent_dim, self.levels, cfg.codebook_size
                )
                self._init_codebooks(xt)
            self._gen = torch.Generator().manual_seed(cfg.seed)
            self.history = []
        elif self.module.encoder[0].in_features != x.shape[1]:
            raise TokenizerError("warm_start needs vectors of the fitted dimension")
        self._train(xt, self._epochs)

    @torch.no_grad()
    def _latents_residuals(self, xt: torch.Tensor) -> list[torch.Tensor]:
        assert self.module is not None
        z = torch.cat([self.module.encoder(b) for b in xt.split(8192)])
        return self.module.quantise(z, self.cfg.distance, self.cfg.beta)[3]

    @torch.no_grad()
    def _init_codebooks(self, xt: torch.Tensor) -> None:
        assert self.module is not None
        cfg, k = self.cfg, self.cfg.codebook_size
        books = self.module.codebooks
        if not cfg.kmeans_init:
            books.uniform_(-1.0 / k, 1.0 / k)
            return
        r = torch.cat([self.module.encoder(b) for b in xt.split(8192)]).numpy()
        for level in range(self.levels):
            cb = fit_codebook(
                r, k, distance=cfg.distance, niter=cfg.kmeans_iters, seed=cfg.seed + level
            )
            books[level] = torch.from_numpy(cb)
            r = r - cb[assign(r, cb, cfg.distance)]

    def _train(self, xt: torch.Tensor, epochs: int) -> None:
        cfg, module, gen = self.cfg, self.module, self._gen
        assert module is not None and gen is not None
        n = len(xt)
        bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
        opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
        module.train()
        with _epoch_bar(epochs) as tick:
            for _ in range(epochs):
                usage = torch.zeros(self.levels, cfg.codebook_size, dtype=torch.long)
                sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0}
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, bs):
                    xb = xt[perm[start : start + bs]]
                    z = module.encoder(xb)
                    zq, codes, lq, _ = module.quantise(z, cfg.distance, cfg.beta)
                    xh = module.decoder(z + (zq - z).detach())
                    lr_ = ((xh - xb) ** 2).sum(1).mean()
                    loss = lr_ + lq
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    w = len(xb) / n
                    sums["loss"] += loss.item() * w
                    sums["recon"] += lr_.item() * w
                    sums["quant"] += lq.item() * w
                    for level in range(self.levels):
                        usage[level] += torch.bincount(codes[:, level], minlength=cfg.codebook_size)
                dead = usage == 0
                restarted = 0
                if cfg.dead_code_restart and bool(dead.any()):
                    restarted = self._restart_dead(xt, dead)
                self.history.append(
                    {
                        **sums,
                        "dead_codes": int(dead.sum()),
                        "dead_per_level": dead.sum(dim=1).tolist(),
                        "restarted": restarted,
                    }
                )
                if tick is not None:
                    tick()
        module.eval()

    @torch.no_grad()
    def _restart_dead(self, xt: torch.Tensor, dead: torch.Tensor) -> int:
        """Re-seed each level's dead codes with random current residuals of that level."""
        assert self.module is not None and self._gen is not None
        residuals = self._latents_residuals(xt)
        n = len(xt)
        for level in range(self.levels):
            idx = torch.nonzero(dead[level]).flatten()
            if len(idx) == 0:
                continue
            pick = torch.randperm(n, generator=self._gen)[: len(idx)]
            if len(pick) < len(idx):  # fewer items than dead codes
                pick = torch.randint(n, (len(idx),), generator=self._gen)
            self.module.codebooks[level, idx] = residuals[level][pick]
        return int(dead.sum())

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, x: np.ndarray) -> np.ndarray:
        assert self.module is not None
        z = self.module.encoder(torch.from_numpy(x))
        return self.module.quantise(z, self.cfg.distance, self.cfg.beta)[1].numpy()

    @torch.no_grad()
    def _decode(self, codes: np.ndarray) -> np.ndarray:
        assert self.module is not None
        c = torch.from_numpy(codes)
        books = self.module.codebooks
        zq = sum(books[level][c[:, level]] for level in range(self.levels))
        return self.module.decoder(zq).numpy()

    @torch.no_grad()
    def _last_level_distances(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        assert self.module is not None
        r = self.module.encoder(torch.from_numpy(x))
        c = torch.from_numpy(codes)
        books = self.module.codebooks
        for level in range(self.levels - 1):
            r = r - books[level][c[:, level]]
        return distances(r.numpy(), books[-1].numpy(), self.cfg.distance)

    def encode_latent(self, x: Any) -> np.ndarray:
        """Encoder output z float32 [n, latent_dim] (before quantisation)."""
        self._require_fitted()
        assert self.module is not None
        with torch.no_grad():
            return self.module.encoder(torch.from_numpy(self.preprocess(x))).numpy()

    def _codebooks(self) -> list[np.ndarray]:
        assert self.module is not None
        return [b.numpy() for b in self.module.codebooks.detach()]

    # ---- persistence ---------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        assert self.module is not None
        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        return {"history": self.history}, {MODEL_FILE: st_torch.save(state)}

    def _restore(self, meta: dict[str, Any], blobs: dict[str, bytes], input_dim: int) -> None:
        cfg = self.cfg
        module = RQVAEModule(
            input_dim, list(cfg.hidden), cfg.latent_dim, self.levels, cfg.codebook_size
        )
        try:
            module.load_state_dict(st_torch.load(blobs[MODEL_FILE]))
        except (RuntimeError, KeyError) as exc:
            raise TokenizerError(
                f"saved RQ-VAE weights do not match the saved config ({exc})"
            ) from exc
        module.eval()
        self.module = module
        self.history = list(meta.get("history") or [])
        self._gen = torch.Generator().manual_seed(cfg.seed + len(self.history))
