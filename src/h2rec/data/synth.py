"""Deterministic synthetic e-commerce dataset with meaningful item text.

The default dataset must let the whole pipeline (text embedding, SID tokenizing, training and
head/tail evaluation) run offline in minutes, *and* give results that mean something. So the
generator is not random noise: items live in a hand-written taxonomy (category > subcategory >
product type), their titles and descriptions are built from that taxonomy, and users consume items
by following a few latent subcategory interests with short-range transitions between related
product types. Text similarity therefore really predicts co-consumption, while a Zipf-Mandelbrot
popularity law gives the long tail that the head/tail buckets need.

Everything is drawn from independent `numpy.random.SeedSequence` streams of `SynthConfig.seed`, so
a config always produces byte-identical frames, and changing `n_users` leaves the catalogue alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from h2rec.data.readers.recbole import write_atomic
from h2rec.io import atomic_write_json

__all__ = [
    "TAXONOMY",
    "Category",
    "Subcategory",
    "SynthConfig",
    "SynthData",
    "generate",
    "n_product_types",
    "write_recbole",
]


# --------------------------------------------------------------------------------------------
# Taxonomy: hand-written so that item text reads like a real catalogue.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subcategory:
    """A subcategory: its product types (adjacent ones are complementary) and its own attributes."""

    name: str
    product_types: tuple[str, ...]
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class Category:
    """A top-level category; its attributes (colours, sizes...) are shared by its subcategories."""

    name: str
    attributes: tuple[str, ...]
    subcategories: tuple[Subcategory, ...]


def _s(name: str, product_types: str, attributes: str) -> Subcategory:
    return Subcategory(name, tuple(product_types.split("|")), tuple(attributes.split("|")))


def _c(name: str, attributes: str, *subs: Subcategory) -> Category:
    return Category(name, tuple(attributes.split("|")), subs)


# Product types are listed so that neighbours (in a ring) are plausible follow-up purchases.
TAXONOMY: tuple[Category, ...] = (
    _c(
        "Beauty",
        "lavender|rose|vanilla|citrus|coconut|unscented|jasmine|sandalwood|travel-size|vegan",
        _s(
            "Nail care",
            "nail polish|top coat|base coat|nail polish remover|cuticle oil|nail file",
            "glossy|matte|quick-dry|glitter|chip-resistant|pastel",
        ),
        _s(
            "Skin care",
            "facial cleanser|toner|face serum|moisturizer|sunscreen|sheet mask",
            "hydrating|oil-free|SPF 50|anti-aging|fragrance-free|brightening",
        ),
        _s(
            "Hair care",
            "shampoo|conditioner|hair mask|hair oil|styling gel",
            "volumizing|curl-defining|anti-frizz|sulfate-free|color-safe|strengthening",
        ),
        _s(
            "Makeup",
            "liquid foundation|blush|eyeshadow palette|eyeliner|mascara|lipstick",
            "long-wear|waterproof|satin|nude|berry|coral",
        ),
        _s(
            "Fragrance",
            "eau de parfum|body mist|cologne|solid perfume",
            "floral|woody|fresh|musky|amber|fruity",
        ),
    ),
    _c(
        "Electronics",
        "black|white|silver|graphite|midnight blue|rose gold|compact|wireless",
        _s(
            "Audio",
            "over-ear headphones|earbuds|bluetooth speaker|soundbar|USB microphone",
            "noise-cancelling|bass-boost|hi-fi|splash-proof|studio|sport",
        ),
        _s(
            "Computer accessories",
            "wireless mouse|mouse pad|mechanical keyboard|laptop stand|USB hub|webcam",
            "ergonomic|backlit|1080p|aluminum|quiet-click|foldable",
        ),
        _s(
            "Mobile accessories",
            "phone case|screen protector|charging cable|wall charger|power bank|car mount",
            "shockproof|tempered glass|fast-charging|USB-C|20000mAh|magnetic",
        ),
        _s(
            "Cameras",
            "action camera|memory card|camera tripod|lens filter|camera bag",
            "4K|128GB|telescoping|UV|padded|stabilized",
        ),
        _s(
            "Smart home",
            "smart plug|smart bulb|thermostat|video doorbell|security camera",
            "voice-controlled|dimmable|energy-saving|Wi-Fi|motion-sensing|outdoor",
        ),
    ),
    _c(
        "Home & Kitchen",
        "sage green|charcoal|ivory|terracotta|navy|natural|large|small",
        _s(
            "Cookware",
            "frying pan|saucepan|stock pot|dutch oven|wok|baking sheet",
            "non-stick|cast iron|stainless steel|copper-core|enameled|induction-ready",
        ),
        _s(
            "Kitchen utensils",
            "chef knife|cutting board|vegetable peeler|measuring cups|whisk|spatula",
            "bamboo|silicone|heat-resistant|dishwasher-safe|forged|beechwood",
        ),
        _s(
            "Bedding",
            "fitted sheet|pillowcase|duvet cover|throw blanket|mattress topper",
            "cotton|linen|queen-size|king-size|flannel|cooling",
        ),
        _s(
            "Bath",
            "bath towel|hand towel|bath mat|shower curtain|soap dispenser",
            "quick-drying|Turkish cotton|waffle-weave|mildew-resistant|plush|absorbent",
        ),
        _s(
            "Home decor",
            "scented candle|flower vase|picture frame|wall clock|table lamp|throw pillow",
            "rustic|minimalist|boho|vintage|ceramic|handmade",
        ),
    ),
    _c(
        "Sports & Outdoors",
        "black|olive|red|blue|lightweight|heavy-duty|adult|youth",
        _s(
            "Camping",
            "camping tent|sleeping bag|camping chair|camp stove|cooler|headlamp",
            "2-person|4-season|insulated|weatherproof|ultralight|rechargeable",
        ),
        _s(
            "Fitness",
            "yoga mat|foam roller|resistance bands|jump rope|dumbbell set|kettlebell",
            "non-slip|adjustable|10 lb|high-density|extra-thick|neoprene",
        ),
        _s(
            "Cycling",
            "bike helmet|bike light|bike lock|cycling gloves|water bottle cage",
            "MIPS|USB-rechargeable|U-lock|padded|carbon|reflective",
        ),
        _s(
            "Running",
            "running shoes|compression socks|running shorts|hydration vest|sports watch",
            "breathable|trail|GPS|moisture-wicking|cushioned|high-visibility",
        ),
        _s(
            "Swimming",
            "swimsuit|swim cap|swim goggles|kickboard|beach towel",
            "anti-fog|chlorine-resistant|silicone|racing|UV-protective|oversized",
        ),
    ),
    _c(
        "Toys & Games",
        "red|blue|rainbow|pastel|toddler|teen|family-size|classic",
        _s(
            "Building toys",
            "building blocks|magnetic tiles|marble run|construction set",
            "500-piece|STEM|wooden|motorized|starter|creative",
        ),
        _s(
            "Board games",
            "strategy board game|card game|dice game|chess set|jigsaw puzzle",
            "1000-piece|cooperative|party|travel|deluxe|two-player",
        ),
        _s(
            "Dolls & figures",
            "fashion doll|dollhouse|plush toy|puppet|action figure",
            "poseable|collectible|soft|talking|vintage-style|giant",
        ),
        _s(
            "Outdoor play",
            "water blaster|bubble machine|sandbox toys|kite|flying disc",
            "long-range|stunt|foldable|automatic|glow-in-the-dark|splash-proof",
        ),
        _s(
            "Arts & crafts",
            "crayon set|watercolor paints|sticker book|craft kit|modeling clay",
            "washable|non-toxic|metallic|jumbo|glitter|scented",
        ),
    ),
    _c(
        "Grocery & Gourmet",
        "organic|gluten-free|family-size|single-serve|low-sugar|vegan|imported|value-pack",
        _s(
            "Coffee & tea",
            "ground coffee|whole bean coffee|espresso pods|green tea|herbal tea|matcha powder",
            "dark roast|medium roast|decaf|chamomile|Earl Grey|single-origin",
        ),
        _s(
            "Snacks",
            "potato chips|popcorn|trail mix|roasted almonds|granola bars|beef jerky",
            "sea salt|honey-roasted|BBQ|cheddar|spicy|kettle-cooked",
        ),
        _s(
            "Pantry staples",
            "pasta|canned tomatoes|olive oil|basmati rice|peanut butter|maple syrup",
            "extra virgin|whole wheat|creamy|crunchy|cold-pressed|Italian",
        ),
        _s(
            "Sweets",
            "dark chocolate bar|hot cocoa mix|cookies|gummy bears|caramel candies",
            "sour|sugar-free|mint|hazelnut|fruity|double chocolate",
        ),
        _s(
            "Baking",
            "all-purpose flour|baking powder|cake mix|chocolate chips|vanilla extract",
            "unbleached|pure|aluminum-free|semi-sweet|almond|red velvet",
        ),
    ),
    _c(
        "Pet Supplies",
        "small breed|large breed|puppy|senior|grain-free|natural|blue|red",
        _s(
            "Dog supplies",
            "dog food|dog treats|chew toy|dog bed|dog collar|dog leash",
            "salmon|chicken|retractable|orthopedic|durable|reflective",
        ),
        _s(
            "Cat supplies",
            "cat food|cat toy|scratching post|litter box|cat litter",
            "clumping|unscented|tuna|catnip|covered|multi-cat",
        ),
        _s(
            "Aquarium",
            "aquarium filter|aquarium heater|LED aquarium light|fish food|gravel vacuum",
            "20-gallon|tropical|submersible|freshwater|saltwater|adjustable",
        ),
        _s(
            "Bird & small animal",
            "bird seed|bird cage|hamster wheel|small animal bedding|rabbit hay",
            "timothy|silent|paper-based|wild|spacious|fortified",
        ),
    ),
    _c(
        "Office Products",
        "black|blue|assorted|refillable|recycled|bulk pack|premium|A5",
        _s(
            "Writing instruments",
            "gel pen|fountain pen|fine-liner|highlighter|mechanical pencil",
            "0.5 mm|retractable|smooth-writing|pastel|fine-tip|smudge-proof",
        ),
        _s(
            "Paper products",
            "spiral notebook|dotted journal|sticky notes|index cards|printer paper",
            "college-ruled|100-sheet|lined|dot-grid|hardcover|neon",
        ),
        _s(
            "Desk organization",
            "desk organizer|pen holder|file folder|monitor riser|desk lamp",
            "mesh|wooden|expandable|LED|stackable|height-adjustable",
        ),
        _s(
            "Office electronics",
            "label maker|desk calculator|laminator|paper shredder|document scanner",
            "cross-cut|solar-powered|portable|thermal|duplex|12-sheet",
        ),
    ),
)


def n_product_types(n_categories: int | None = None) -> int:
    """Number of product types in the first `n_categories` categories (all when None)."""
    cats = TAXONOMY if n_categories is None else TAXONOMY[:n_categories]
    return sum(len(s.product_types) for c in cats for s in c.subcategories)


# Syllables for invented but pronounceable brand names.
_ONSETS = (
    *("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"),
    *(
        "br",
        "cl",
        "dr",
        "fl",
        "gr",
        "kr",
        "pr",
        "st",
        "tr",
        "sol",
        "mar",
        "nov",
        "ver",
        "lum",
        "zen",
    ),
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ia", "ou", "io")
_CODAS = ("", "", "", "n", "r", "x", "s", "l", "ra", "na", "ly", "vo", "ix", "on", "ett")

_SEED_STREAMS = 7  # catalogue, brands, users, sequences, coverage, time, ids
# Redraws of an item already in the user's history, before a repeat is accepted: by popularity in
# the product type, then in the subcategory, then uniformly in the subcategory.
_DEDUP_TRIES = ("type",) * 2 + ("subcategory",) * 4 + ("uniform",) * 2
_GAP_SIGMA = 1.5  # log-sd of the time between two interactions of a user
_MAX_GAP_S = 90 * 86_400  # cap on one gap so a single draw cannot span the whole window
_RATING_P = (0.03, 0.04, 0.11, 0.30, 0.52)  # P(rating = 1..5): mostly 4-5, as in real reviews


# --------------------------------------------------------------------------------------------
# Config and result
# --------------------------------------------------------------------------------------------


class SynthConfig(BaseModel):
    """Everything the generator depends on; the resolved config is saved next to the data."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0)  # root of all random streams
    n_users: int = Field(6000, ge=1)  # exact number of users
    n_items: int = Field(3000, ge=1)  # exact number of items (each used at least once)
    n_categories: int | None = Field(None, ge=1, le=len(TAXONOMY))  # first k categories; None=all
    zipf_exponent: float = Field(1.05, ge=0.0)  # s in weight(rank) = (rank + offset)^-s
    zipf_offset: float = Field(0.0, ge=0.0)  # Mandelbrot offset q: > 0 flattens the top ranks
    mean_seq_len: float = Field(11.0, gt=0.0)  # target mean interactions per user (before the cap)
    min_seq_len: int = Field(5, ge=1)  # every user has at least this many interactions
    max_seq_len: int = Field(50, ge=1)  # and at most this many
    seq_len_sigma: float = Field(1.0, gt=0.0)  # log-sd of the lognormal part of the length
    p_stay: float = Field(0.7, ge=0.0, le=1.0)  # next item from the same/complementary product type
    p_same_type: float = Field(0.4, ge=0.0, le=1.0)  # given a stay: keep the exact product type
    p_noise: float = Field(0.05, ge=0.0, le=1.0)  # next item drawn from global popularity instead
    max_interests: int = Field(3, ge=1, le=10)  # a user follows 1..max_interests subcategories
    interest_alpha: float = Field(1.0, gt=0.0)  # Dirichlet concentration of interest weights
    p_cross_category: float = Field(0.15, ge=0.0, le=1.0)  # extra interest may leave the category
    brands_per_category: int = Field(10, ge=1, le=60)  # invented brand names per category
    p_second_attribute: float = Field(0.5, ge=0.0, le=1.0)  # item also gets a category attribute
    start_timestamp: int = Field(1_577_836_800, ge=0)  # window start, unix s (2020-01-01)
    time_span_days: float = Field(730.0, gt=0.0)  # users start anywhere in this window
    gap_median_hours: float = Field(24.0, gt=0.0)  # median time between a user's interactions

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        if self.min_seq_len > self.max_seq_len:
            raise ValueError(
                f"min_seq_len ({self.min_seq_len}) must be <= max_seq_len ({self.max_seq_len})"
            )
        if not self.min_seq_len <= self.mean_seq_len <= self.max_seq_len:
            raise ValueError(
                f"mean_seq_len ({self.mean_seq_len}) must lie in "
                f"[min_seq_len, max_seq_len] = [{self.min_seq_len}, {self.max_seq_len}]"
            )
        need = n_product_types(self.n_categories)
        if self.n_items < need:
            raise ValueError(
                f"n_items ({self.n_items}) must be >= the number of product types ({need}) so "
                "every product type has an item; lower n_categories for tiny datasets"
            )
        if self.n_users * self.min_seq_len < self.n_items:
            raise ValueError(
                f"n_users * min_seq_len ({self.n_users * self.min_seq_len}) must be >= n_items "
                f"({self.n_items}) so every item can appear in an interaction"
            )
        return self


@dataclass
class SynthData:
    """Generated interactions (ordered by user, then time) and the item table."""

    interactions: pl.DataFrame  # user_id: str, item_id: str, rating: f64, timestamp: i64
    items: pl.DataFrame  # item_id, title, brand, category, subcategory, product_type, ...
    config: SynthConfig


# --------------------------------------------------------------------------------------------
# Sampling helpers
# --------------------------------------------------------------------------------------------


def _draw_in_groups(
    cum: np.ndarray, start: np.ndarray, stop: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Draw one element per row from [start, stop) of a grouped array, proportional to weight.

    `cum` is the inclusive cumulative sum of the weights with each group contiguous, so one
    `searchsorted` draws from many different groups at once.
    """
    lo = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    hi = cum[stop - 1]
    idx = np.searchsorted(cum, lo + u * (hi - lo), side="right")
    return np.clip(idx, start, stop - 1)


def _draw_rows(cum_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn per row of a (rows, k) inclusive cumulative weight matrix."""
    target = u * cum_rows[:, -1]
    idx = (cum_rows <= target[:, None]).sum(axis=1)
    return np.minimum(idx, cum_rows.shape[1] - 1)


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct pronounceable names from syllables (two onset+vowel pairs and a coda)."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        o1, o2 = rng.integers(len(_ONSETS), size=2)
        v1, v2 = rng.integers(len(_VOWELS), size=2)
        coda = _CODAS[int(rng.integers(len(_CODAS)))]
        name = (_ONSETS[o1] + _VOWELS[v1] + _ONSETS[o2] + _VOWELS[v2] + coda).capitalize()
        if 4 <= len(name) <= 10 and name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _noun_phrase(attrs: list[str], ptype: str) -> str:
    """'A quick-dry nail polish', 'An oil-free toner', 'Lined sticky notes' (plural: no article)."""
    phrase = f"{', '.join(attrs)} {ptype}"
    last = ptype.rsplit(" ", 1)[-1]
    if last.endswith("s") and not last.endswith("ss"):
        return phrase[0].upper() + phrase[1:]
    return f"{'An' if phrase[0].lower() in 'aeiou' else 'A'} {phrase}"


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------


@dataclass
class _Catalog:
    """Internal item arrays; internal item order is grouped by product type (then subcategory)."""

    item_pt: np.ndarray  # product type of each item (non-decreasing)
    item_w: np.ndarray  # popularity weight of each item
    item_cum: np.ndarray  # inclusive cumsum of item_w (grouped by product type)
    pt_start: np.ndarray  # first item of each product type
    pt_stop: np.ndarray
    pt_sub: np.ndarray  # subcategory of each product type
    pt_w: np.ndarray  # total weight of each product type
    pt_cum: np.ndarray  # inclusive cumsum of pt_w (grouped by subcategory)
    sub_start: np.ndarray  # first product type of each subcategory
    sub_stop: np.ndarray
    sub_cat: np.ndarray  # category of each subcategory
    sub_w: np.ndarray
    sub_cum: np.ndarray  # inclusive cumsum of sub_w (grouped by category)
    cat_start: np.ndarray  # first subcategory of each category
    cat_stop: np.ndarray
    items: pl.DataFrame  # item table in internal order (item_id filled in later)


def _build_catalog(
    cfg: SynthConfig, rng: np.random.Generator, brand_rng: np.random.Generator
) -> _Catalog:
    """Taxonomy slice, item counts per product type, popularity weights, brands and item text."""
    cats = TAXONOMY if cfg.n_categories is None else TAXONOMY[: cfg.n_categories]
    subs = [(ci, s) for ci, c in enumerate(cats) for s in c.subcategories]
    pts = [(si, p) for si, (_, s) in enumerate(subs) for p in s.product_types]
    n_pt, n_sub = len(pts), len(subs)

    pt_sub = np.array([si for si, _ in pts], dtype=np.int64)
    sub_cat = np.array([ci for ci, _ in subs], dtype=np.int64)
    sub_start = np.searchsorted(pt_sub, np.arange(n_sub), side="left")
    sub_stop = np.searchsorted(pt_sub, np.arange(n_sub), side="right")
    cat_start = np.searchsorted(sub_cat, np.arange(len(cats)), side="left")
    cat_stop = np.searchsorted(sub_cat, np.arange(len(cats)), side="right")

    # Items per product type: one each, the rest spread unevenly (some product types are big).
    size_w = rng.lognormal(0.0, 0.6, size=n_pt)
    per_pt = 1 + rng.multinomial(cfg.n_items - n_pt, size_w / size_w.sum())
    item_pt = np.repeat(np.arange(n_pt), per_pt)
    pt_stop = np.cumsum(per_pt)
    pt_start = pt_stop - per_pt

    # Popularity: Zipf-Mandelbrot weight by rank, ranks shuffled so popularity is not tied to
    # product type or id.
    rank = rng.permutation(cfg.n_items)
    item_w = (rank + 1.0 + cfg.zipf_offset) ** (-cfg.zipf_exponent)
    pt_w = np.bincount(item_pt, weights=item_w, minlength=n_pt)
    sub_w = np.bincount(pt_sub, weights=pt_w, minlength=n_sub)

    # Brands per category, with a skewed share of the category's items.
    names = _brand_names(brand_rng, cfg.brands_per_category * len(cats))
    brand_share = 1.0 / np.arange(1, cfg.brands_per_category + 1) ** 0.8
    brand_cum = np.cumsum(np.tile(brand_share, len(cats)))
    item_sub = pt_sub[item_pt]
    item_cat = sub_cat[item_sub]
    b_start = item_cat * cfg.brands_per_category
    item_brand = _draw_in_groups(
        brand_cum, b_start, b_start + cfg.brands_per_category, rng.random(cfg.n_items)
    )

    # Attributes: one specific to the subcategory, sometimes one shared by the category.
    n_sub_attr = np.array([len(s.attributes) for _, s in subs])
    n_cat_attr = np.array([len(c.attributes) for c in cats])
    spec_idx = (rng.random(cfg.n_items) * n_sub_attr[item_sub]).astype(np.int64)
    gen_idx = (rng.random(cfg.n_items) * n_cat_attr[item_cat]).astype(np.int64)
    has_gen = rng.random(cfg.n_items) < cfg.p_second_attribute

    rows: dict[str, list[str]] = {
        k: []
        for k in (
            "title",
            "brand",
            "category",
            "subcategory",
            "product_type",
            "attributes",
            "description",
        )
    }
    used: set[str] = set()
    for i in range(cfg.n_items):
        _, ptype = pts[item_pt[i]]
        ci, sub = subs[item_sub[i]]
        cat = cats[ci]
        brand = names[item_brand[i]]
        attrs = [sub.attributes[spec_idx[i]]]
        if has_gen[i]:
            attrs.insert(0, cat.attributes[gen_idx[i]])
        title = f"{brand} {' '.join(attrs)} {ptype}"
        while title in used:  # a model code keeps titles unique, as in real catalogues
            letters = "".join(chr(65 + int(x)) for x in rng.integers(26, size=2))
            title = f"{brand} {' '.join(attrs)} {ptype} {letters}-{int(rng.integers(10, 1000))}"
        used.add(title)
        rows["title"].append(title)
        rows["brand"].append(brand)
        rows["category"].append(cat.name)
        rows["subcategory"].append(sub.name)
        rows["product_type"].append(ptype)
        rows["attributes"].append(", ".join(attrs))
        rows["description"].append(
            f"{_noun_phrase(attrs, ptype)} from {brand}. Category: {cat.name} > {sub.name}."
        )

    return _Catalog(
        item_pt=item_pt,
        item_w=item_w,
        item_cum=np.cumsum(item_w),
        pt_start=pt_start,
        pt_stop=pt_stop,
        pt_sub=pt_sub,
        pt_w=pt_w,
        pt_cum=np.cumsum(pt_w),
        sub_start=sub_start,
        sub_stop=sub_stop,
        sub_cat=sub_cat,
        sub_w=sub_w,
        sub_cum=np.cumsum(sub_w),
        cat_start=cat_start,
        cat_stop=cat_stop,
        items=pl.DataFrame(rows),
    )


# --------------------------------------------------------------------------------------------
# Users and sequences
# --------------------------------------------------------------------------------------------


def _user_interests(
    cfg: SynthConfig, cat: _Catalog, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, k) subcategories and inclusive cumulative weights of each user's interests.

    The first interest is drawn by subcategory popularity; further ones mostly stay in the same
    category (a nail-polish buyer also buys skin care) and sometimes cross to any category.
    """
    n, k = cfg.n_users, cfg.max_interests
    n_sub = len(cat.sub_w)
    n_int = 1 + rng.integers(k, size=n)
    first = _draw_in_groups(cat.sub_cum, np.zeros(n, np.int64), np.full(n, n_sub), rng.random(n))
    subs = np.repeat(first[:, None], k, axis=1)
    home = cat.sub_cat[first]
    for j in range(1, k):
        cross = rng.random(n) < cfg.p_cross_category
        start = np.where(cross, 0, cat.cat_start[home])
        stop = np.where(cross, n_sub, cat.cat_stop[home])
        drawn = _draw_in_groups(cat.sub_cum, start, stop, rng.random(n))
        subs[:, j] = np.where(j < n_int, drawn, first)
    weights = rng.gamma(cfg.interest_alpha, size=(n, k))
    weights[np.arange(k)[None, :] >= n_int[:, None]] = 0.0
    weights[:, 0] += 1e-12  # never an all-zero row
    return subs, np.cumsum(weights, axis=1)


def _seq_lengths(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """min_seq_len + a lognormal extra (long tail), capped at max_seq_len."""
    extra_mean = cfg.mean_seq_len - cfg.min_seq_len
    if extra_mean <= 0:
        return np.full(cfg.n_users, cfg.min_seq_len, dtype=np.int64)
    # floor() loses ~0.5 on average, so aim the continuous mean half a step higher
    mu = np.log(extra_mean + 0.5) - cfg.seq_len_sigma**2 / 2
    extra = np.floor(rng.lognormal(mu, cfg.seq_len_sigma, size=cfg.n_users)).astype(np.int64)
    return np.minimum(cfg.min_seq_len + extra, cfg.max_seq_len)


def _sequences(
    cfg: SynthConfig, cat: _Catalog, rng: np.random.Generator, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, max_len) item matrix (-1 padded) and noise mask, drawn step by step for all users.

    Per step: with p_noise a globally popular item; else with p_stay a Metropolis move among the
    product types of the current subcategory (stay, or go to a ring neighbour with acceptance
    w(new)/w(old), so product-type shares keep following popularity); else a fresh subcategory from
    the user's interests. The item is then drawn by popularity inside the product type; an item
    already in the user's history is redrawn a few times (then by popularity, then uniformly, in
    the whole subcategory), so repeats stay rare, as in review data. The no-repeat rule caps how
    many users a head item can reach, which flattens the top of the rank-frequency curve much as
    in real review data; the middle and tail keep a slope close to -zipf_exponent.
    """
    n = cfg.n_users
    max_len = int(lengths.max())
    n_items = len(cat.item_w)
    subs, interest_cum = _user_interests(cfg, cat, rng)
    hist = np.full((n, max_len), -1, dtype=np.int64)
    noise_mat = np.zeros((n, max_len), dtype=bool)
    cur_pt = np.zeros(n, dtype=np.int64)
    all_start = np.zeros(n, dtype=np.int64)
    for t in range(max_len):
        rows = np.nonzero(lengths > t)[0]
        m = len(rows)
        u_mode, u_stay = rng.random(m), rng.random(m)
        if t == 0:
            noise = np.zeros(m, dtype=bool)
            stay = np.zeros(m, dtype=bool)
        else:
            noise = u_mode < cfg.p_noise
            stay = ~noise & (u_stay < cfg.p_stay)
        redraw = ~noise & ~stay

        # product type of the non-noise rows
        pt = cur_pt[rows].copy()
        sub = subs[rows, _draw_rows(interest_cum[rows], rng.random(m))]
        fresh = _draw_in_groups(cat.pt_cum, cat.sub_start[sub], cat.sub_stop[sub], rng.random(m))
        s0 = cat.sub_start[cat.pt_sub[pt]]
        size = cat.sub_stop[cat.pt_sub[pt]] - s0
        step = np.where(rng.random(m) < 0.5, 1, -1)
        cand = s0 + (pt - s0 + step) % size
        accept = (rng.random(m) >= cfg.p_same_type) & (
            rng.random(m) * cat.pt_w[pt] < cat.pt_w[cand]
        )
        pt = np.where(redraw, fresh, np.where(stay & accept, cand, pt))
        cur_pt[rows[~noise]] = pt[~noise]

        def draw(idx: np.ndarray, mode: str, pt=pt, noise=noise) -> np.ndarray:
            k = len(idx)
            u_glob, u_local = rng.random(k), rng.random(k)
            glob = _draw_in_groups(cat.item_cum, all_start[:k], np.full(k, n_items), u_glob)
            if mode == "type":
                lo, hi = cat.pt_start[pt[idx]], cat.pt_stop[pt[idx]]
            else:  # the whole subcategory (its items are contiguous)
                sub = cat.pt_sub[pt[idx]]
                lo = cat.pt_start[cat.sub_start[sub]]
                hi = cat.pt_stop[cat.sub_stop[sub] - 1]
            if mode == "uniform":
                local = lo + (u_local * (hi - lo)).astype(np.int64)
            else:
                local = _draw_in_groups(cat.item_cum, lo, hi, u_local)
            return np.where(noise[idx], glob, local)

        item = draw(np.arange(m), "type")
        if t > 0:
            past = hist[rows, :t]
            for mode in _DEDUP_TRIES:
                dup = np.nonzero((past == item[:, None]).any(axis=1))[0]
                if len(dup) == 0:
                    break
                item[dup] = draw(dup, mode)
        hist[rows, t] = item
        noise_mat[rows, t] = noise
    return hist, noise_mat


def _cover_all_items(cat: _Catalog, items: np.ndarray, rng: np.random.Generator) -> None:
    """Give every never-drawn item one interaction, in place.

    Each unused item replaces an interaction of another item of the same product type (else the
    same subcategory, else anywhere) that is used more than once, so co-consumption semantics are
    kept and every count stays >= 1.
    """
    n_items = len(cat.item_w)
    counts = np.bincount(items, minlength=n_items)
    unused = np.nonzero(counts == 0)[0]
    if len(unused) == 0:
        return
    order = rng.permutation(len(items))
    item_sub = cat.pt_sub[cat.item_pt]
    levels = (cat.item_pt, item_sub, np.zeros(n_items, dtype=np.int64))
    pools: list[dict[int, list[int]]] = []
    for key in levels:
        k = key[items[order]]
        srt = np.argsort(k, kind="stable")
        bounds = np.flatnonzero(np.diff(k[srt])) + 1
        groups = np.split(order[srt], bounds)
        pools.append({int(key[items[g[0]]]): list(g[::-1]) for g in groups if len(g)})
    for j in unused:
        for key, pool in zip(levels, pools, strict=True):
            cand = pool.get(int(key[j]), [])
            pos = -1
            while cand:
                p = cand.pop()
                if counts[items[p]] > 1:
                    pos = p
                    break
            if pos >= 0:
                break
        else:  # pragma: no cover - impossible while total interactions >= n_items
            raise RuntimeError("cannot place every item; increase n_users or min_seq_len")
        counts[items[pos]] -= 1
        counts[j] += 1
        items[pos] = j


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate(config: SynthConfig) -> SynthData:
    """Generate the dataset described by `config` (deterministic: same config, same frames)."""
    cfg = config
    streams = [
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(_SEED_STREAMS)
    ]
    rng_cat, rng_brand, rng_users, rng_seq, rng_cover, rng_time, rng_ids = streams

    cat = _build_catalog(cfg, rng_cat, rng_brand)
    lengths = _seq_lengths(cfg, rng_users)
    hist, noise_mat = _sequences(cfg, cat, rng_seq, lengths)
    mask = np.arange(hist.shape[1])[None, :] < lengths[:, None]
    items = hist[mask]  # row-major: by user, then position
    users = np.repeat(np.arange(cfg.n_users), lengths)
    _cover_all_items(cat, items, rng_cover)

    # Timestamps: lognormal gaps (>= 1 s, so strictly increasing), user start spread over the window
    n_total = len(items)
    gaps = np.exp(rng_time.normal(np.log(cfg.gap_median_hours * 3600.0), _GAP_SIGMA, n_total))
    gaps = 1 + np.minimum(np.floor(gaps), _MAX_GAP_S).astype(np.int64)
    first_pos = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    gaps[first_pos] = 0
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first_pos], lengths)
    duration = offsets[first_pos + lengths - 1]
    span = int(cfg.time_span_days * 86_400)
    start = cfg.start_timestamp + np.floor(
        rng_time.random(cfg.n_users) * np.maximum(span - duration, 0)
    ).astype(np.int64)
    timestamps = np.repeat(start, lengths) + offsets
    # Ratings: mostly 4-5; noise picks (impulse buys) are rated a little lower.
    ratings = 1.0 + rng_time.choice(5, size=n_total, p=_RATING_P).astype(np.float64)
    noise = noise_mat[mask]
    ratings[noise] = np.maximum(ratings[noise] - (rng_time.random(int(noise.sum())) < 0.3), 1.0)

    # External ids: items get a shuffled id so ids reveal neither product type nor popularity.
    iw = max(5, len(str(cfg.n_items)))
    uw = max(5, len(str(cfg.n_users)))
    ext = rng_ids.permutation(cfg.n_items)
    item_ids = pl.Series("item_id", [f"i{e + 1:0{iw}d}" for e in ext.tolist()], dtype=pl.String)
    user_ids = pl.Series("user_id", [f"u{u + 1:0{uw}d}" for u in range(cfg.n_users)])

    interactions = pl.DataFrame(
        {
            "user_id": user_ids.gather(users),
            "item_id": item_ids.gather(items),
            "rating": pl.Series(ratings, dtype=pl.Float64),
            "timestamp": pl.Series(timestamps, dtype=pl.Int64),
        }
    )
    item_table = (
        cat.items.with_columns(item_ids)
        .select(
            "item_id",
            "title",
            "brand",
            "category",
            "subcategory",
            "product_type",
            "attributes",
            "description",
        )
        .sort("item_id")
    )
    return SynthData(interactions=interactions, items=item_table, config=cfg)


def write_recbole(data: SynthData, out_dir: str | Path, name: str = "synth") -> dict[str, Path]:
    """Write `<name>.inter`, `<name>.item` (RecBole atomic files) and `<name>.synth.json`.

    The JSON holds the resolved config, so the files can be regenerated exactly.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "inter": out / f"{name}.inter",
        "item": out / f"{name}.item",
        "config": out / f"{name}.synth.json",
    }
    inter = data.interactions.select("user_id", "item_id", "rating", "timestamp")
    write_atomic(
        paths["inter"],
        inter,
        {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"},
    )
    write_atomic(
        paths["item"],
        data.items,
        {c: ("token" if c == "item_id" else "token_seq") for c in data.items.columns},
    )
    atomic_write_json(paths["config"], data.config.model_dump(mode="json"))
    return paths
