"""Hugging Face sequence classifiers as ``TextClassifier``s.

``HuggingFaceClassifier(model, tokenizer)`` wraps an ``AutoModelForSequenceClassification``
and its tokenizer: texts are tokenised with truncation and padding, run in eval mode under
``no_grad`` on the chosen device, and the logits come back on the CPU. ``transformers`` is an
optional extra (``pip install rampart[text]``); this module imports it only in
``from_pretrained``, and ``import rampart`` never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rampart.devices import resolve_device
from rampart.errors import ConfigError, ModelLoadError
from rampart.text.classifier import TextClassifier


def _class_names(config: Any, num_classes: int) -> list[str] | None:
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(num_classes)]
    if all(names) and names != [f"LABEL_{i}" for i in range(num_classes)]:
        return names
    return None


class HuggingFaceClassifier(TextClassifier):
    """A ``transformers`` sequence-classification model and its tokenizer as a text model.

    Args:
        model: e.g. ``AutoModelForSequenceClassification.from_pretrained(...)``; its
            ``config.num_labels`` gives the number of classes.
        tokenizer: the matching tokenizer (called with ``padding``/``truncation``).
        max_length: longer texts are truncated to this many tokens.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda:N``.
        batch_size, max_queries, labels: as ``TextClassifier`` (labels default to the
            model config's ``id2label`` when it names them).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_length: int = 128,
        device: str | None = "auto",
        batch_size: int = 32,
        max_queries: int | None = None,
        labels: list[str] | None = None,
    ) -> None:
        config = getattr(model, "config", None)
        num_classes = getattr(config, "num_labels", None)
        if not isinstance(model, torch.nn.Module) or num_classes is None:
            raise ConfigError(
                "HuggingFaceClassifier needs a transformers sequence-classification model "
                f"(an nn.Module with config.num_labels), got {type(model).__name__}"
            )
        if not callable(tokenizer):
            raise ConfigError(f"the tokenizer must be callable, got {type(tokenizer).__name__}")
        if int(max_length) < 2:
            raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
        if getattr(tokenizer, "pad_token", "") is None:
            # Decoder models (GPT-2 and kin) ship without a padding token; batching needs one,
            # and their classifier head finds the last real token through pad_token_id.
            if getattr(tokenizer, "eos_token", None) is None:
                raise ConfigError("the tokenizer has neither a pad token nor an eos token; set "
                                  "tokenizer.pad_token before wrapping the model")
            tokenizer.pad_token = tokenizer.eos_token
            if getattr(config, "pad_token_id", None) is None:
                config.pad_token_id = tokenizer.pad_token_id
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        # Never ask for more tokens than the model has positions (or the tokenizer allows).
        limits = [int(max_length), getattr(config, "max_position_embeddings", None),
                  getattr(tokenizer, "model_max_length", None)]
        self.max_length = min(int(v) for v in limits if isinstance(v, int) and v > 1)
        super().__init__(
            self._forward, int(num_classes),
            labels=labels if labels is not None else _class_names(config, int(num_classes)),
            batch_size=batch_size, max_queries=max_queries,
        )

    @torch.no_grad()
    def _forward(self, texts: list[str]) -> torch.Tensor:
        self.model.eval()
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        return self.model(**encoded).logits.float().cpu()

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, local_files_only: bool = True, **options: Any
    ) -> HuggingFaceClassifier:
        """Load a saved model directory (``save_pretrained``) and its tokenizer.

        ``local_files_only`` (the default) never touches the network; pass ``False`` to let
        ``transformers`` download a hub model by name.
        """
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ModuleNotFoundError:
            raise ModelLoadError(
                "Hugging Face models need the transformers package: pip install 'rampart[text]'"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=local_files_only)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), local_files_only=local_files_only
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load a Hugging Face sequence classifier from {path}: {exc}"
            ) from None
        return cls(model, tokenizer, **options)
