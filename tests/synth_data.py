"""The synthetic catalogue prepared for tests that train (one recipe, several sizes)."""

from __future__ import annotations

from pathlib import Path


def prepare_synth(root: Path, **synth: object):  # type: ignore[no-untyped-def]
    """Generate a synthetic catalogue (`SynthConfig(**synth)`) under `root/raw` and prepare it
    with the shipped `data/synth` config into `root/prep`: the prepared Dataset."""
    from h2rec.config import apply_overrides, read_yaml, validate
    from h2rec.data import PrepareConfig, prepare
    from h2rec.data.synth import SynthConfig, generate, write_recbole

    write_recbole(generate(SynthConfig(**synth)), root / "raw")  # type: ignore[arg-type]
    cfg = validate(
        PrepareConfig,
        apply_overrides(
            read_yaml("data/synth"), [f"source.path={root / 'raw'}", f"output={root / 'prep'}"]
        ),
    )
    return prepare(cfg)
