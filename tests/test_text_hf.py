"""The Hugging Face adapter with a tiny randomly initialised BERT and a tokenizer built here
(no downloads: HF_HUB_OFFLINE is set), and the promise that ``import rampart`` does not
import transformers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from rampart.errors import ConfigError, ModelLoadError  # noqa: E402
from rampart.text import WordAttack  # noqa: E402
from rampart.text.char_edits import CharEdits  # noqa: E402
from rampart.text.corpus import NEGATIVE_ADJ, POSITIVE_ADJ, SUBJECTS  # noqa: E402
from rampart.text.hf import HuggingFaceClassifier  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = sorted({*POSITIVE_ADJ, *NEGATIVE_ADJ, *SUBJECTS, "the", "was", "is", "a", "what"})


def tiny_tokenizer() -> object:
    """A word-level tokenizer over a small vocabulary, built in memory."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")


def tiny_bert(num_labels: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
        num_labels=num_labels, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    return transformers.BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def trained() -> HuggingFaceClassifier:
    """The tiny BERT fitted for a few steps to tell good adjectives from bad ones."""
    tok, model = tiny_tokenizer(), tiny_bert()
    texts = [f"the {s} was {a}" for s in SUBJECTS[:10] for a in POSITIVE_ADJ + NEGATIVE_ADJ]
    labels = torch.tensor([int(a in POSITIVE_ADJ) for _ in SUBJECTS[:10]
                           for a in POSITIVE_ADJ + NEGATIVE_ADJ])
    batch = tok(texts, padding=True, return_tensors="pt")
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(**batch, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return HuggingFaceClassifier(model, tok, device="cpu", batch_size=8)


def test_adapter_shapes_eval_mode_and_queries(trained: HuggingFaceClassifier) -> None:
    texts = ["the movie was great", "the film was awful", "what a terrible hotel"] * 4
    logits = trained.logits(texts)
    assert logits.shape == (12, 2) and not logits.requires_grad
    assert logits.device.type == "cpu"
    assert trained.queries == 12
    # Eval mode: dropout (p=0.5 here) is off, so the answers are deterministic.
    assert torch.equal(trained.logits(texts), logits)
    assert not trained.model.training
    # Truncation: a text far longer than max_length (and the 64 positions) still works.
    assert trained.logits(["the movie was great " * 200]).shape == (1, 2)
    accuracy = (trained.predict(["the book was excellent", "the book was dreadful"])
                == torch.tensor([1, 0])).float().mean()
    assert accuracy == 1.0


def test_attack_on_hf_model(trained: HuggingFaceClassifier) -> None:
    texts = ["the phone was excellent", "the hotel was horrible", "the coffee was superb"]
    before = trained.queries
    result = WordAttack(CharEdits(), max_queries=200)(trained, texts, [1, 0, 1])
    assert trained.queries - before == int(result.queries.sum())
    # A typo turns a positive adjective into [UNK], which this model reads as negative.
    assert result.success[[0, 2]].all()
    flipped = [a for a, s in zip(result.adversarial, result.success.tolist(), strict=True) if s]
    assert (trained.predict(flipped) != torch.tensor([1, 0, 1])[result.success]).all()


def test_save_and_load_offline(trained: HuggingFaceClassifier, tmp_path: Path) -> None:
    trained.model.save_pretrained(tmp_path)
    trained.tokenizer.save_pretrained(tmp_path)
    loaded = HuggingFaceClassifier.from_pretrained(tmp_path, device="cpu")
    texts = ["the game was boring", "the story was lovely"]
    assert torch.allclose(loaded.logits(texts), trained.logits(texts), atol=1e-5)
    with pytest.raises(ModelLoadError, match="could not load"):
        HuggingFaceClassifier.from_pretrained(tmp_path / "nothing", device="cpu")


def test_adapter_errors() -> None:
    with pytest.raises(ConfigError, match="sequence-classification model"):
        HuggingFaceClassifier(object(), tiny_tokenizer())
    with pytest.raises(ConfigError, match="max_length"):
        HuggingFaceClassifier(tiny_bert(), tiny_tokenizer(), max_length=1)
    model = HuggingFaceClassifier(tiny_bert(3), tiny_tokenizer(), device="cpu")
    assert model.num_classes == 3 and model.labels is None


def test_decoder_model_without_pad_token() -> None:
    """GPT-2-style models have no pad token: the adapter borrows eos so batches can pad."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>",
                                                     unk_token="<unk>")
    assert tokenizer.pad_token is None
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=1, n_head=2,
                                     n_positions=32, num_labels=2)
    model = HuggingFaceClassifier(transformers.GPT2ForSequenceClassification(config), tokenizer,
                                  device="cpu")
    assert model.max_length == 32
    batch = model.logits(["the movie was great", "awful", "the book is fine"])
    single = model.logits(["awful"])
    assert batch.shape == (3, 2)
    assert torch.allclose(batch[1], single[0], atol=1e-5)  # padding does not change answers
