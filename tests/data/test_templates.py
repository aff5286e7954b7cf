from __future__ import annotations

import pytest

from h2rec.data.templates import PRESETS, TextTemplate, resolve_template
from h2rec.errors import ConfigError


def test_llmesr_amazon_prompt_by_hand() -> None:
    tpl = resolve_template(
        "llmesr-amazon",
        "fields",
        ["title", "brand", "price", "categories", "description"],
        variables={"domain": "beauty"},
    )
    row = {
        "title": "Lip Balm",
        "brand": None,
        "price": "4.5",
        "categories": "Beauty; Lips",
        "description": "Soft.",
    }
    assert tpl.render(row) == (
        "The beauty item has following attributes: \n name is Lip Balm; brand is unknown; price is 4.5. \n"
        "The item has following features: Beauty; Lips. \n"
        "The item has following descriptions: Soft.. \n"
    )
    # no categories: the whole features line disappears; a missing description says "unknown"
    row2 = {**row, "categories": "", "description": None}
    assert tpl.render(row2) == (
        "The beauty item has following attributes: \n name is Lip Balm; brand is unknown; price is 4.5. \n"
        "The item has following descriptions: unknown. \n"
    )


def test_llmesr_yelp_prompt_by_hand() -> None:
    fields = ["name", "categories", "type", "open", "review_count", "city", "stars"]
    tpl = resolve_template("llmesr-yelp", "fields", fields)
    row = dict(
        zip(
            fields,
            ["Cafe X", "Coffee Tea", "business", "True", "12", "Phoenix", "4.5"],
            strict=True,
        )
    )
    assert tpl.render(row) == (
        "The point of interest has following attributes: \n name is Cafe X; category is Coffee Tea; "
        "type is business; open status is True; review count is 12; city is Phoenix; average score is 4.5."
    )


def test_fields_default_skips_missing_and_trims() -> None:
    tpl = resolve_template(None, "fields", ["movie_title", "release_year"])
    assert tpl.render({"movie_title": "Toy Story", "release_year": "1995"}) == (
        "movie title: Toy Story; release year: 1995"
    )
    assert tpl.render({"movie_title": "Heat", "release_year": None}) == "movie title: Heat"


def test_truncation_braces_and_errors() -> None:
    tpl = TextTemplate("{{literal}} {a}", max_chars=12)
    assert tpl.render({"a": "abcdefgh"}) == "{literal} ab"
    with pytest.raises(ConfigError, match="field 'nope'"):
        resolve_template("{nope}", "fields", ["title"])
    with pytest.raises(ConfigError, match="neither a preset"):
        resolve_template("not-a-preset", "fields", ["title"])
    assert set(PRESETS) >= {"llmesr-yelp", "llmesr-amazon", "title", "title-description"}
