"""Configuration of `h2rec prepare`: source format, preprocessing, split and item text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from h2rec.config import StrictModel


class LCRecSource(StrictModel):
    format: Literal["lcrec"] = "lcrec"
    path: (
        str  # folder holding <name>.inter.json [.item.json] [.index.json], or the .inter.json file
    )
    name: str | None = None  # dataset name; found automatically when the folder has one


class SASRecSource(StrictModel):
    format: Literal["sasrec"] = "sasrec"
    path: str  # text file, one `user item item ...` line per user
    items_path: str | None = None  # optional LC-Rec style item JSON with item text
    items_id_offset: int = 0  # added to items_path ids (S3Rec ids = LC-Rec ids + 1)


class RecBoleSource(StrictModel):
    format: Literal["recbole"] = "recbole"
    path: str  # folder with <name>.inter [.item] [.user], or the .inter file
    name: str | None = None
    user_field: str = "user_id"
    item_field: str = "item_id"
    time_field: str = "timestamp"
    rating_field: str = "rating"


class TableSource(StrictModel):
    format: Literal["table"] = "table"
    path: str  # CSV / TSV (optionally .gz) or Parquet
    user: str = (
        "user_id"  # column names in the file (or 0-based positions when has_header is false)
    )
    item: str = "item_id"
    timestamp: str | None = None
    rating: str | None = None
    timestamp_format: str | None = None  # strftime format for date strings; ISO dates need none
    sep: str | None = None  # default: tab for .tsv, comma otherwise
    has_header: bool = True
    items_path: str | None = None  # optional item table
    items_item: str | None = None  # its item id column (default: same name as `item`)
    items_fields: list[str] | None = None  # its text columns (default: all others)
    items_sep: str | None = None


class AmazonSource(StrictModel):
    format: Literal["amazon2014", "amazon2018"] = "amazon2014"
    reviews: str  # reviews_X.json.gz (2014) or X.json.gz (2018)
    meta: str | None = None  # meta_X.json.gz
    domain: str | None = (
        None  # word used by the LLM-ESR template ("beauty"); default from file name
    )


class YelpSource(StrictModel):
    format: Literal["yelp"] = "yelp"
    review: str  # yelp_academic_dataset_review.json
    business: str | None = None  # yelp_academic_dataset_business.json


SourceConfig = Annotated[
    LCRecSource | SASRecSource | RecBoleSource | TableSource | AmazonSource | YelpSource,
    Field(discriminator="format"),
]


class PreprocessConfig(StrictModel):
    min_rating: float | None = None  # keep interactions with rating >= this (null: keep all)
    min_time: float | str | None = None  # keep interactions at or after this unix time / ISO date
    max_time: float | str | None = None  # keep interactions at or before this unix time / ISO date
    remove_consecutive_repeats: bool = False  # drop an item that repeats the user's previous item
    user_core: int = Field(0, ge=0)  # users need >= this many interactions (0: off)
    item_core: int = Field(0, ge=0)  # items need >= this many interactions (0: off)
    kcore: Literal["iterative", "single-pass"] = "iterative"  # single-pass = LLM-ESR filter_common
    min_seq_len: int = Field(0, ge=0)  # drop users with fewer interactions after k-core


class SplitConfig(StrictModel):
    kind: Literal["loo", "temporal"] = "loo"  # leave-one-out, or global time cut-offs
    valid_time: float | str | None = None  # temporal: interactions at/after this go to validation
    test_time: float | str | None = None  # temporal: interactions at/after this go to test
    valid_frac: float | None = Field(None, gt=0, lt=1)  # temporal alternative: latest fraction
    test_frac: float | None = Field(None, gt=0, lt=1)  # ... of all interactions by time

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.kind == "temporal":
            by_time = self.valid_time is not None and self.test_time is not None
            by_frac = self.valid_frac is not None and self.test_frac is not None
            if by_time == by_frac:
                raise ValueError(
                    "temporal split needs either valid_time+test_time or valid_frac+test_frac"
                )
            if by_frac and self.valid_frac + self.test_frac >= 1:  # type: ignore[operator]
                raise ValueError("valid_frac + test_frac must be < 1")
        return self


class TextConfig(StrictModel):
    template: str | None = None  # preset name or template string; null: the reader's default
    missing: str = "unknown"  # placeholder for an absent field (LLM-ESR uses "unknown")
    max_chars: int = Field(4095, gt=0)  # LLM-ESR truncates prompts to 4,095 characters
    variables: dict[str, str] = Field(default_factory=dict)  # constants such as domain: beauty


class PrepareConfig(StrictModel):
    name: str  # dataset name, used in paths and stamps
    source: SourceConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    output: str | None = None  # prepared dataset folder (default: artifacts/prepared/<name>)

    def output_dir(self) -> str:
        return self.output or f"artifacts/prepared/{self.name}"
