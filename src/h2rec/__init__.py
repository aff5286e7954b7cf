"""h2rec: sequential recommendation with Semantic IDs and Hash IDs (H2Rec) and honest baselines."""

from __future__ import annotations

__version__ = "0.1.0"
