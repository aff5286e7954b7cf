"""Declarative experiments: YAML grids of (dataset x model x seed) cells that run resumably, leave
one small committed JSON per cell, and aggregate into the paper's tables and figures."""

from __future__ import annotations

from h2rec.experiments.report import report, write_block
from h2rec.experiments.runner import run, status
from h2rec.experiments.spec import Cell, ExperimentSpec, cells, load_experiment

__all__ = [
    "Cell",
    "ExperimentSpec",
    "cells",
    "load_experiment",
    "report",
    "run",
    "status",
    "write_block",
]
