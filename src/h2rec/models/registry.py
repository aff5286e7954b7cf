"""Models registered by name, each with a pydantic config (extra keys are rejected).

    @register_model("sasrec", config=SASRecConfig)
    def build_sasrec(n_items: int, cfg: SASRecConfig, inputs: ModelInputs) -> SequentialModel

`build_model("sasrec", n_items, hidden_size=64, ...)` validates the keyword config and calls the
factory. Data the model is built from (popularity, semantic IDs, codebooks, text vectors,
training sequences) arrives as `ModelInputs`: it is data, not a hyperparameter, so it never enters
a saved config.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from h2rec.config import validate
from h2rec.errors import ConfigError
from h2rec.models.base import SequentialModel
from h2rec.models.inputs import ModelInputs


class ModelConfig(BaseModel):
    """Base for model configs: unknown keys are errors, so a typo never silently uses a default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Factory = Callable[[int, Any, ModelInputs], SequentialModel]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: type[ModelConfig]
    factory: Factory


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config: type[ModelConfig]) -> Callable[[Factory], Factory]:
    """Decorator registering `factory(n_items, cfg, inputs) -> SequentialModel` under `name`."""

    def decorate(factory: Factory) -> Factory:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key].factory is not factory:
            raise ValueError(f"model '{name}' is already registered")
        _REGISTRY[key] = ModelEntry(key, config, factory)
        return factory

    return decorate


def _load_builtin() -> None:
    # The baselines register themselves on import; importing here makes `build_model` work even
    # when only this module was imported.
    for module in (
        "baselines",
        "ccfrec",
        "companions",
        "h2rec",
        "llm_esr",
        "melt",
        "pcr_ca",
        "url4dr",
    ):
        importlib.import_module(f"h2rec.models.{module}")


def _entry(name: str) -> ModelEntry:
    _load_builtin()
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _REGISTRY[key]


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def model_config_class(name: str) -> type[ModelConfig]:
    return _entry(name).config


def model_class(name: str) -> type[SequentialModel]:
    """The class model `name`'s factory builds (its return annotation), so class-level facts such
    as its paper loss (`default_loss`) are known without data or a built model."""
    entry = _entry(name)
    cls = typing.get_type_hints(entry.factory).get("return")
    if not (isinstance(cls, type) and issubclass(cls, SequentialModel)):
        raise TypeError(
            f"model '{name}': its factory must be annotated to return a SequentialModel subclass"
        )
    return cls


def parse_model_config(
    name: str, config: Mapping[str, Any] | ModelConfig | None = None
) -> ModelConfig:
    """Validate a config mapping for model `name` (defaults filled in, unknown keys rejected)."""
    entry = _entry(name)
    if isinstance(config, entry.config):
        return config
    if isinstance(config, BaseModel):
        config = config.model_dump()
    return validate(entry.config, dict(config or {}), source=f"model '{name}'")


def build_model(
    name: str,
    n_items: int,
    *,
    inputs: ModelInputs | None = None,
    popularity: np.ndarray | None = None,
    **config: Any,
) -> SequentialModel:
    """Build model `name` for a catalogue of `n_items` items from keyword config values.

    `inputs`: the data the model is built from (see `ModelInputs`); `popularity` is a shortcut
    for `ModelInputs(popularity=...)` (training counts per id, length n_items + 1, needed by
    "mostpop" and ignored by models that do not use it).
    """
    entry = _entry(name)
    cfg = parse_model_config(name, config)
    if n_items < 1:
        raise ConfigError(f"n_items must be >= 1, got {n_items}")
    inputs = inputs if inputs is not None else ModelInputs()
    if popularity is not None:
        inputs.popularity = np.asarray(popularity)
    inputs.check(n_items)
    return entry.factory(n_items, cfg, inputs)
