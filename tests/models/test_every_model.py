"""Invariants every registered model must keep, checked on each one built from the synthetic
SID dataset (text vectors and codes included).

- Left padding is not information: training batches are trimmed to their longest sequence and
  LLM-ESR's teacher to each chunk's, so a model whose scores moved with the amount of leading
  padding would train on one thing and be evaluated on another.
- Candidate scores are the full-catalogue scores at those items (sampled protocols and full
  ranking must rank with the same numbers), and the padding column is never a candidate.
- The training path scores like the evaluation path: SID and text models encode items one way in
  training (only the batch's distinct items, with gradients) and another in evaluation (a cached
  catalogue table); with dropout off the two must give the same logits.
"""

from __future__ import annotations

import pytest
import torch

from h2rec.models import build_model, list_models
from h2rec.training.inputs import load_model_inputs

# small configs, dropout 0 so training mode is deterministic (MELT: no warm-up, so its own item
# path is the one tested)
CONFIGS: dict[str, dict] = {
    "sasrec": {"hidden_size": 16, "n_layers": 1},
    "bert4rec": {"hidden_size": 16, "n_layers": 1, "n_heads": 2},
    "gru4rec": {"hidden_size": 16},
    "mostpop": {},
    "melt": {"hidden_size": 16, "n_layers": 1},
    "llm_esr": {"hidden_size": 16, "n_layers": 1, "sd_neighbours": 2, "text_embeddings": "tfidf"},
    "sid_only": {"hidden_size": 16, "n_layers": 1, "sids": "rqk"},
    "hid_sid_concat": {"hidden_size": 16, "n_layers": 1, "sids": "rqk"},
    "ccfrec": {"hidden_size": 16, "n_layers": 1, "n_heads": 2, "sids": "rqk", "cross_dropout": 0.0},
    "url4dr": {"semantic_dim": 12, "id_dim": 4, "codebook_size": 16, "n_heads": 2},
    "pcr_ca": {"hidden_size": 16, "n_layers": 1, "codebook_size": 16},
    "h2rec": {"hidden_size": 16, "sids": "rqk", "text_embeddings": "tfidf"},
}
TEXT = {"llm_esr", "ccfrec", "url4dr", "pcr_ca", "h2rec"}
MAX_LEN = 30


def test_every_registered_model_is_covered() -> None:
    assert set(CONFIGS) == set(list_models())


def _build(name: str, ds):  # type: ignore[no-untyped-def]
    params = {**CONFIGS[name], "max_len": MAX_LEN}
    if name != "mostpop":
        params["dropout"] = 0.0
    if name in TEXT:
        params.setdefault("text_embeddings", "tfidf")
    torch.manual_seed(0)
    inputs = load_model_inputs(ds, name, params)
    return build_model(name, ds.n_items, inputs=inputs, **params)


def _left_pad(rows: list[list[int]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, width - len(r) :] = torch.tensor(r)
    return out


ROWS = [[5, 17, 230, 4, 99], [311], [12, 12, 40, 7, 388, 2, 150, 61, 9, 400, 33]]


@pytest.fixture(scope="module")
def models(synth_sid_dataset):  # type: ignore[no-untyped-def]
    return {name: _build(name, synth_sid_dataset) for name in CONFIGS}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_scores_do_not_depend_on_left_padding(models, name: str) -> None:
    model = models[name].eval()
    with torch.no_grad():
        narrow = model.score(_left_pad(ROWS, 12))
        wide = model.score(_left_pad(ROWS, MAX_LEN))
    torch.testing.assert_close(narrow, wide, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_candidate_scores_are_the_full_scores_at_those_items(models, name: str) -> None:
    model = models[name].eval()
    n = model.n_items
    seqs = _left_pad(ROWS, 16)
    cands = torch.tensor([[1, n, 17, 17, 250], [3, 4, 5, 6, 7], [n - 1, 2, 99, 388, 1]])
    with torch.no_grad():
        full = model.score(seqs)
        some = model.score(seqs, cands)
    assert full.shape == (3, n + 1) and full.dtype == torch.float32
    assert torch.isneginf(full[:, 0]).all() and torch.isfinite(full[:, 1:]).all()
    torch.testing.assert_close(some, full.gather(1, cands), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(set(CONFIGS) - {"mostpop"}))
def test_training_path_scores_like_the_evaluation_path(models, name: str) -> None:
    model = models[name]
    seqs = _left_pad(ROWS, 16)
    items = torch.tensor([[1, 9, 9, 250], [3, 4, 5, 400], [2, 99, 388, 1]])
    model.eval()
    with torch.no_grad():
        user = model.user_repr(seqs)
        want = model.score_all(user).gather(1, items)
    model.train()
    with torch.no_grad():
        got = model.score_items(user, items)
    model.eval()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
