"""The main job on the embedded default dataset:
generate -> prepare -> describe -> embed -> tokenize -> train -> evaluate.

H2Rec itself will extend this same entry point; it is what the README's first command runs on a
fresh machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from h2rec.config import dump_yaml, load_config
from h2rec.data.config import PrepareConfig
from h2rec.data.dataset import Dataset
from h2rec.data.prepare import prepare
from h2rec.data.stats import compute_stats, plot_popularity
from h2rec.data.synth import SynthConfig, generate, write_recbole
from h2rec.io import atomic_write_json, atomic_write_text


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workdir: str = "artifacts"  # every artefact goes under here
    synth: SynthConfig = Field(default_factory=SynthConfig)  # the synthetic catalogue
    data: str = "data/synth"  # prepare config: built-in name or YAML path
    data_overrides: list[str] = Field(default_factory=list)  # key=value for the prepare config
    embed: str | None = "embed/minilm"  # embedding config (null: skip embed and tokenize)
    embed_overrides: list[str] = Field(default_factory=list)
    tokenize: str | None = "tokenize/rqvae-4x128"  # tokenizer config (null: skip)
    tokenize_overrides: list[str] = Field(default_factory=list)
    train: str | None = "train/sasrec-synth"  # training config (null: stop after the statistics)
    train_overrides: list[str] = Field(default_factory=list)  # key=value for the training config


def run_pipeline(cfg: PipelineConfig, *, force: bool = False) -> dict[str, Any]:
    """Run every stage and return the paths and statistics it produced."""
    work = Path(cfg.workdir)
    raw_dir = work / "raw" / "synth"
    write_recbole(generate(cfg.synth), raw_dir, name="synth")
    prep_cfg = load_config(
        PrepareConfig,
        cfg.data,
        [f"source.path={raw_dir}", f"output={work / 'prepared' / 'synth'}", *cfg.data_overrides],
    )
    ds: Dataset = prepare(prep_cfg, force=force)
    out = Path(prep_cfg.output_dir())
    stats = compute_stats(ds)
    atomic_write_json(out / "stats.json", stats)
    png = plot_popularity(ds, out / "popularity.png")
    atomic_write_text(work / "pipeline.yaml", dump_yaml(cfg))
    result: dict[str, Any] = {
        "raw": str(raw_dir),
        "prepared": str(out),
        "stats": stats,
        "popularity_png": str(png),
    }
    if cfg.embed is not None:
        from h2rec.sid import TokenizerConfig, tokenize_dataset
        from h2rec.text import EmbedConfig, embed_items, save_item_embeddings

        emb = embed_items(ds, load_config(EmbedConfig, cfg.embed, cfg.embed_overrides))
        save_item_embeddings(emb, ds)
        result["embeddings"] = {"name": emb.name, "key": emb.key, "dim": emb.dim, **emb.info}
        if cfg.tokenize is not None:
            tok_cfg = load_config(TokenizerConfig, cfg.tokenize, cfg.tokenize_overrides)
            path, diag = tokenize_dataset(ds, tok_cfg, embeddings=emb.name)
            result["sids"] = {"path": str(path), "diagnostics": diag}
    if cfg.train is not None:
        from h2rec.training import TrainConfig, Trainer

        train_cfg = load_config(
            TrainConfig,
            cfg.train,
            [f"data={out}", f"runs_dir={work / 'runs'}", *cfg.train_overrides],
        )
        result["train"] = Trainer(train_cfg, ds).fit(overwrite=True)
    return result
