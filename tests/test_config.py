from __future__ import annotations

import pytest

from h2rec.config import apply_overrides, expand_env, load_config, read_yaml
from h2rec.data.config import PrepareConfig
from h2rec.errors import ConfigError


def test_dotlist_overrides_parse_yaml_values() -> None:
    base = {"a": {"b": 1, "c": "x"}, "d": [1]}
    out = apply_overrides(
        base, ["a.b=2", "a.e.f=true", "d=[1, 2]", "g=null", "h=0.5", "s=hello world"]
    )
    assert out == {
        "a": {"b": 2, "c": "x", "e": {"f": True}},
        "d": [1, 2],
        "g": None,
        "h": 0.5,
        "s": "hello world",
    }
    assert base == {"a": {"b": 1, "c": "x"}, "d": [1]}  # input untouched
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(base, ["novalue"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(base, ["a.b.c=1"])


def test_env_expansion(monkeypatch) -> None:
    monkeypatch.setenv("H2REC_TEST_DIR", "/data")
    monkeypatch.delenv("H2REC_UNSET", raising=False)
    assert expand_env({"p": "${H2REC_TEST_DIR}/x", "q": ["${H2REC_UNSET:-def}"]}) == {
        "p": "/data/x",
        "q": ["def"],
    }
    with pytest.raises(ConfigError, match="H2REC_UNSET"):
        expand_env("${H2REC_UNSET}")


def test_validation_error_names_the_field(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: x\nsource: {format: lcrec, path: p}\npreprocess: {user_core: -1}\n")
    with pytest.raises(ConfigError, match=r"preprocess\.user_core"):
        load_config(PrepareConfig, f)
    with pytest.raises(ConfigError, match=r"source"):
        load_config(PrepareConfig, f, ["source.format=nosuchformat"])
    with pytest.raises(ConfigError, match=r"preprocess\.typo: Extra inputs"):
        load_config(PrepareConfig, f, ["preprocess.user_core=1", "preprocess.typo=3"])


def test_builtin_configs_load() -> None:
    for name in ("data/beauty", "data/yelp", "data/instruments", "data/ml-100k", "data/synth"):
        cfg = load_config(PrepareConfig, name)
        assert cfg.name == name.split("/")[1]
    with pytest.raises(ConfigError, match="neither a file nor a built-in"):
        read_yaml("data/nope")
