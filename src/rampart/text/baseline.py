"""A small, fast text classifier the tests, the demo and the benchmarks train in seconds.

fastText-style: each text becomes a bag of hashed features (lower-cased words, word bigrams
and character n-grams of each word), averaged by an ``EmbeddingBag`` and mapped to logits by
a linear layer. Hashing uses CRC32, so features are the same in every process. Weights and
settings are saved together in one safetensors file (settings in its metadata): no pickle.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rampart.errors import ConfigError, ModelLoadError
from rampart.text.classifier import TextClassifier, check_labels, check_texts

_WORD = re.compile(r"\w+")
FORMAT = "rampart.text.baseline/1"


def text_features(text: str, char_ngrams: tuple[int, ...] = (3, 4)) -> list[str]:
    """The feature strings of one text: words, word bigrams and character n-grams."""
    words = _WORD.findall(text.lower())
    feats = [f"w:{w}" for w in words]
    feats += [f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    for word in words:
        padded = f"<{word}>"
        for n in char_ngrams:
            feats += [f"c:{padded[i:i + n]}" for i in range(len(padded) - n + 1)]
    return feats


class BaselineTextModel(nn.Module):
    """Hashed bag of words, bigrams and character n-grams -> mean embedding -> linear logits.

    Args:
        num_classes: the number of classes.
        buckets: the size of the hashing space (collisions are rare below ~10% fill).
        dim: the embedding size.
        char_ngrams: the character n-gram lengths (``()`` for words and bigrams only).
        labels: optional class names.
    """

    def __init__(
        self,
        num_classes: int = 2,
        *,
        buckets: int = 1 << 15,
        dim: int = 32,
        char_ngrams: Sequence[int] = (3, 4),
        labels: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if int(num_classes) < 2 or int(buckets) < 1 or int(dim) < 1:
            raise ConfigError(
                f"BaselineTextModel needs num_classes >= 2, buckets >= 1 and dim >= 1, got "
                f"{num_classes}, {buckets}, {dim}"
            )
        self.num_classes = int(num_classes)
        self.buckets = int(buckets)
        self.dim = int(dim)
        self.char_ngrams = tuple(int(n) for n in char_ngrams)
        self.labels = list(labels) if labels is not None else None
        self.embedding = nn.EmbeddingBag(self.buckets, self.dim, mode="mean")
        self.head = nn.Linear(self.dim, self.num_classes)

    def settings(self) -> dict[str, object]:
        """What ``__init__`` needs to rebuild this model (stored next to the weights)."""
        return {
            "num_classes": self.num_classes, "buckets": self.buckets, "dim": self.dim,
            "char_ngrams": list(self.char_ngrams), "labels": self.labels,
        }

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hashed feature ids and bag offsets for ``nn.EmbeddingBag``."""
        ids: list[int] = []
        offsets: list[int] = []
        for text in texts:
            offsets.append(len(ids))
            ids += [
                zlib.crc32(f.encode("utf-8")) % self.buckets
                for f in text_features(text, self.char_ngrams)
            ]
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids, offsets))

    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits for ``texts`` in eval mode (no input checks: use ``classifier()`` for that)."""
        self.eval()
        return self(*self.encode(list(texts)))

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[int] | torch.Tensor | np.ndarray,
        *,
        epochs: int = 6,
        lr: float = 0.05,
        batch_size: int = 32,
        seed: int = 0,
    ) -> BaselineTextModel:
        """Train on ``texts`` / ``labels`` with Adam and cross-entropy; returns ``self``."""
        texts = check_texts(texts)
        y = check_labels(labels, len(texts), self.num_classes)
        encoded = [self.encode([t])[0] for t in texts]
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.head.reset_parameters()  # from the seed too, so one seed gives one model
        optimiser = torch.optim.Adam(self.parameters(), lr=lr)
        self.train()
        for _ in range(int(epochs)):
            order = torch.randperm(len(texts), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                ids = torch.cat([encoded[i] for i in batch])
                lengths = torch.tensor([len(encoded[i]) for i in batch])
                offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
                loss = nn.functional.cross_entropy(self(ids, offsets), y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self.eval()
        return self

    def classifier(
        self, *, batch_size: int = 256, max_queries: int | None = None
    ) -> TextClassifier:
        """This model as a ``TextClassifier`` (input checks, batching, query count)."""
        return TextClassifier(
            self.predict_logits, self.num_classes, labels=self.labels, batch_size=batch_size,
            max_queries=max_queries,
        )

    def save(self, path: str | Path) -> Path:
        """Write weights and settings to one safetensors file; returns its path."""
        path = Path(path)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        try:
            if path.is_dir():
                raise IsADirectoryError(21, "it is a folder; give a file name")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(path), metadata={"format": FORMAT,
                                                     "settings": json.dumps(self.settings())})
        except (OSError, SafetensorError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"cannot write the text model to {path}: {reason}; choose a "
                              "file in a folder you can write to") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> BaselineTextModel:
        """Read a model written by ``save`` (safetensors only, never pickle)."""
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"no text model at {path}; train one with BaselineTextModel.fit")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type, OSError, ...
            raise ModelLoadError(f"{path} is not a safetensors file: {exc}") from None
        if metadata.get("format") != FORMAT:
            raise ModelLoadError(
                f"{path} is not a rampart baseline text model (format "
                f"{metadata.get('format')!r}); save one with BaselineTextModel.save"
            )
        try:
            settings = json.loads(metadata["settings"])
            model = cls(settings.pop("num_classes"), **settings)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelLoadError(
                f"{path} has missing or damaged model settings in its metadata "
                f"({type(exc).__name__}: {exc}); save the model again with BaselineTextModel.save"
            ) from None
        try:
            model.load_state_dict(tensors)
        except RuntimeError as exc:
            raise ModelLoadError(f"{path} does not match its settings: {exc}") from None
        return model.eval()


def train_baseline(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    **fit_args: object,
) -> BaselineTextModel:
    """A ``BaselineTextModel`` trained on ``texts`` (``num_classes`` from the labels if unset)."""
    k = int(num_classes) if num_classes is not None else max(2, int(max(labels)) + 1)
    model = BaselineTextModel(k, labels=class_names)
    return model.fit(texts, labels, seed=seed, **fit_args)  # type: ignore[arg-type]
