"""Configuration of `h2rec train`: data, model, objective, optimisation and evaluation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from h2rec.config import StrictModel


class ModelSection(BaseModel):
    """`name` picks a registered model; every other key is that model's own config."""

    model_config = ConfigDict(extra="allow")
    name: str = "sasrec"

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "name"}


class ObjectiveSection(StrictModel):
    kind: Literal["auto", "next_item", "cloze"] = "auto"  # auto: cloze for bert4rec, else next_item
    loss: Literal["bce", "bpr", "ce", "sampled_softmax", "gbce"] = "ce"
    num_negatives: int = Field(1, ge=0)  # sampled losses; ce uses all items
    negatives_exclude: Literal["none", "positive", "history"] = (
        "history"  # what a negative may not be
    )
    # Draw num_negatives once per batch and share them across positions, the in-batch-negatives
    # trick of CCFRec/RecBole-style sampled softmax; cheaper for models that encode items with a
    # network (CCFRec's Q-Former encodes each unique item of targets + shared negatives once per
    # step instead of the whole catalogue). Exclusion is a per-position mask, see BatchIterator.
    negatives_shared: bool = False
    gbce_t: float = Field(0.75, ge=0, le=1)  # gSASRec calibration
    # sampled softmax: subtract log q(item); our negatives (shared or not) are uniform, so it is
    # the constant log(n_items) on every logit and leaves the loss unchanged
    logq: bool = False
    positions: Literal["all", "last"] = "all"  # next-item target at every step, or last only
    mask_ratio: float = Field(0.2, gt=0, lt=1)  # cloze (BERT4Rec)
    # cloze: this fraction of rows masks ONLY its last item (BERT4Rec's extra train/test-matching
    # samples, LLM-ESR's doubled training set); 0 is plain BERT4Rec
    last_item_prob: float = Field(0.0, ge=0, le=1)


class OptimSection(StrictModel):
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    scheduler: Literal["none", "cosine", "linear"] = "none"  # over all planned steps
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = 5.0  # max global grad norm (null: off)
    # How the Adam update runs, not what it computes (results equal up to float rounding):
    # fused = one kernel over all parameters (CPU and CUDA); it took 12-18% off a SASRec step on
    # 2 CPU cores, where the for-loop's ~10 elementwise passes over the item table dominated.
    implementation: Literal["fused", "foreach", "for-loop"] = "fused"


class EvalSection(StrictModel):
    valid_protocol: str = "full"  # protocol for model selection during training
    # which validation targets select the model: "all", or "new" (leave out revisits, targets
    # already in the user's history: on Yelp the untrained epoch-1 text models win full-ranking
    # validation by re-recommending the history; evaluation.revisits). Test metrics always
    # cover every target.
    valid_targets: Literal["all", "new"] = "all"
    metric: str = "NDCG@10"  # validation metric to maximise
    patience: int = Field(10, ge=1)  # epochs without improvement before stopping
    every: int = Field(1, ge=1)  # validate every N epochs
    test_protocols: list[str] = Field(default_factory=lambda: ["full", "uni100"])
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    tie: Literal["pessimistic", "optimistic", "mean", "random"] = "pessimistic"
    exclude_history: bool = False
    negatives_seed: int = 0  # sampled protocols: the stored candidate draw
    # users per evaluation batch; never changes a rank. 256 measured fastest on 2 CPU cores for
    # Beauty's 12k items (1024: up to 1.4x slower); a GPU may prefer larger batches.
    batch_size: int = Field(256, gt=0)


class TrainConfig(StrictModel):
    name: str  # run name; the run folder is <runs_dir>/<name>
    data: str  # prepared dataset folder
    runs_dir: str = "runs"
    model: ModelSection = Field(default_factory=ModelSection)
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    seed: int = 42
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, gt=0)
    max_len: int = Field(50, gt=0)  # most recent items fed to the model
    bucket_by_length: bool = True  # batch users of similar length: less padding, same outputs
    loss_norm: Literal["constant", "batch"] = "constant"  # constant: every target weighs the same
    device: str = "auto"  # auto: cuda when available, else cpu
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    threads: int | None = None  # torch CPU threads (null: torch default)
    deterministic: bool = False  # torch.use_deterministic_algorithms
    tensorboard: bool = False  # also log to <run>/tensorboard (needs the tensorboard package)
    checkpoint_every: int = Field(1, ge=1)  # epochs between resumable checkpoints
