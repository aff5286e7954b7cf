"""One evaluator for every model: examples, candidates, ranks, metrics, breakdowns, reports.

Typical use::

    ev = Evaluator(ds, split="test", protocol="full")        # or "uni100" / "pop100"
    result = ev.evaluate(score_fn, model_name="sasrec", model_config=cfg, train_seed=42)
    result.save("results/sasrec.json")
    print_results([result])
"""

from __future__ import annotations

from h2rec.evaluation.breakdowns import GroupSpec, item_popularity, quantile_groups, user_groups
from h2rec.evaluation.candidates import (
    NegativeSet,
    Protocol,
    load_or_draw_negatives,
    parse_protocol,
    sample_negatives,
)
from h2rec.evaluation.evaluator import EvalResult, Evaluator, GroupResult, ScoreFn
from h2rec.evaluation.examples import EvalExamples, build_examples
from h2rec.evaluation.exposure import exposure, gini
from h2rec.evaluation.metrics import DEFAULT_KS, compute_metrics, metric_names
from h2rec.evaluation.ranking import TIE_POLICIES, rank_full, rank_sampled
from h2rec.evaluation.report import (
    MixedProtocolError,
    MixedProtocolWarning,
    build_table,
    print_results,
    render_results,
)
from h2rec.evaluation.revisits import revisit_breakdown, revisit_mask
from h2rec.evaluation.stamp import ProtocolStamp, config_hash

__all__ = [
    "DEFAULT_KS",
    "TIE_POLICIES",
    "EvalExamples",
    "EvalResult",
    "Evaluator",
    "GroupResult",
    "GroupSpec",
    "MixedProtocolError",
    "MixedProtocolWarning",
    "NegativeSet",
    "Protocol",
    "ProtocolStamp",
    "ScoreFn",
    "build_examples",
    "build_table",
    "compute_metrics",
    "config_hash",
    "exposure",
    "gini",
    "item_popularity",
    "load_or_draw_negatives",
    "metric_names",
    "parse_protocol",
    "print_results",
    "quantile_groups",
    "rank_full",
    "rank_sampled",
    "render_results",
    "revisit_breakdown",
    "revisit_mask",
    "sample_negatives",
    "user_groups",
]
