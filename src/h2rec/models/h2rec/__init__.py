"""H2Rec (dual-branch SID + HID with dual-level alignment), registered as model "h2rec".

model = build_model("h2rec", n_items, inputs=ModelInputs(codes=..., codebooks=..., ...))
"""

from __future__ import annotations

from h2rec.models.h2rec.config import H2RecConfig
from h2rec.models.h2rec.model import H2Rec, H2RecState, build_h2rec_model
from h2rec.models.registry import register_model

register_model("h2rec", config=H2RecConfig)(build_h2rec_model)

__all__ = ["H2Rec", "H2RecConfig", "H2RecState", "build_h2rec_model"]
