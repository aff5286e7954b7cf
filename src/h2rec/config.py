"""YAML configs with `key=value` dotlist overrides, validated by pydantic models.

One mechanism for every stage: a YAML file (or a built-in name) gives the defaults, command-line
`a.b=value` pairs override them, `${VAR:-default}` expands environment variables, and the resolved
config is saved next to every artefact so the artefact can be re-made.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from h2rec.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config section: an unknown key (a typo) is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """Expand `${VAR}` / `${VAR:-default}` in every string of a nested structure."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set and has no default")

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as a YAML scalar/list/map)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(cfg: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `cfg` with dotlist overrides applied (later ones win)."""
    out: dict[str, Any] = copy.deepcopy(dict(cfg))
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = {}
                node[k] = child
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{k}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


def builtin_config_path(name: str) -> Path | None:
    """Path of a config shipped inside the package (e.g. 'data/beauty'), or None."""
    base = resources.files("h2rec") / "configs"
    candidate = base / f"{name}.yaml"
    path = Path(str(candidate))
    return path if path.is_file() else None


def read_yaml(path_or_name: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a path, or from a built-in config name."""
    path = Path(path_or_name)
    if not path.is_file():
        builtin = builtin_config_path(str(path_or_name))
        if builtin is None:
            raise ConfigError(f"config '{path_or_name}' is neither a file nor a built-in config")
        path = builtin
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def validate(model: type[M], data: Mapping[str, Any], *, source: str = "config") -> M:
    """Validate with pydantic and turn errors into one readable message naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines)) from exc


def load_config(
    model: type[M],
    path_or_name: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> M:
    """Defaults from `path_or_name` (file or built-in), then overrides, then validation."""
    base = read_yaml(path_or_name) if path_or_name is not None else {}
    merged = expand_env(apply_overrides(base, overrides))
    return validate(model, merged, source=str(path_or_name or "overrides"))


def dump_yaml(model: BaseModel) -> str:
    """The resolved config as YAML (JSON-compatible types only, so it reloads exactly)."""
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
