"""Item text assembled from fields by a small template language.

`{field}` is replaced by the field's value (or the `missing` word); a section `[[ ... ]]` is
dropped when every field inside it is absent, which expresses LLM-ESR's optional lines.
`{{` and `}}` are literal braces. Presets reproduce the prompts of the reference pipelines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from h2rec.errors import ConfigError

PRESETS: dict[str, str] = {
    # LLM-ESR / H2Rec Yelp notebook prompt.
    "llmesr-yelp": (
        "The point of interest has following attributes: \n name is {name}; category is {categories}; "
        "type is {type}; open status is {open}; review count is {review_count}; city is {city}; "
        "average score is {stars}."
    ),
    # LLM-ESR Amazon (Beauty) prompt; the features line disappears when there are no categories.
    "llmesr-amazon": (
        "The {domain} item has following attributes: \n name is {title}; brand is {brand}; "
        "price is {price}. \n[[The item has following features: {categories}. \n]]"
        "The item has following descriptions: {description}. \n"
    ),
    "title": "{title}",
    "title-description": "{title}[[. {description}]]",
}

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECTION = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def fields_template(fields: Sequence[str]) -> str:
    """`name: {name}; ...` over all fields, each an optional section (the generic default)."""
    parts = [f"[[{f.replace('_', ' ')}: {{{f}}}; ]]" for f in fields]
    return "".join(parts)


@dataclass(frozen=True)
class TextTemplate:
    """A compiled template; render it per item with `render(row)`."""

    source: str
    missing: str = "unknown"
    max_chars: int = 4095
    variables: Mapping[str, str] | None = None
    trim: str = ""  # characters stripped from the end (the generic template's trailing "; ")

    @property
    def fields(self) -> list[str]:
        text = self.source.replace("{{", "").replace("}}", "")
        seen: dict[str, None] = {}
        for name in _PLACEHOLDER.findall(text):
            seen[name] = None
        return list(seen)

    def check(self, available: Sequence[str]) -> None:
        """Every placeholder must be an item field or a variable; say which one is not."""
        known = set(available) | set(self.variables or {})
        for name in self.fields:
            if name not in known:
                raise ConfigError(
                    f"text template uses field '{name}', which the item table does not have "
                    f"(fields: {', '.join(sorted(available)) or 'none'}; variables: "
                    f"{', '.join(sorted(self.variables or {})) or 'none'})"
                )

    def render(self, row: Mapping[str, object]) -> str:
        values: dict[str, str | None] = {}
        for name in self.fields:
            v = (
                (self.variables or {}).get(name)
                if name not in row or row[name] is None
                else row[name]
            )
            s = None if v is None else str(v).strip()
            values[name] = s or None

        def fill(fragment: str) -> str:
            out = _PLACEHOLDER.sub(
                lambda m: values[m.group(1)] or self.missing,
                fragment.replace("{{", "\0").replace("}}", "\1"),
            )
            return out.replace("\0", "{").replace("\1", "}")

        def section(m: re.Match[str]) -> str:
            inner = m.group(1)
            names = _PLACEHOLDER.findall(inner.replace("{{", "").replace("}}", ""))
            if names and all(values[n] is None for n in names):
                return ""
            return inner

        text = fill(_SECTION.sub(section, self.source))
        if self.trim:
            text = text.rstrip(self.trim)
        return text[: self.max_chars]


def resolve_template(
    spec: str | None,
    default: str,
    fields: Sequence[str],
    *,
    missing: str = "unknown",
    max_chars: int = 4095,
    variables: Mapping[str, str] | None = None,
) -> TextTemplate:
    """Turn a config value (preset name, template string or None) into a checked template."""
    name = spec if spec is not None else default
    trim = ""
    if name == "fields":
        source, trim = fields_template(fields), "; "
    else:
        source = PRESETS.get(name, name)
        if name not in PRESETS and "{" not in name:
            raise ConfigError(
                f"text template '{name}' is neither a preset ({', '.join(['fields', *PRESETS])}) "
                "nor a template with {field} placeholders"
            )
    tpl = TextTemplate(
        source, missing=missing, max_chars=max_chars, variables=dict(variables or {}), trim=trim
    )
    tpl.check(fields)
    return tpl
