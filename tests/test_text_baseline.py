"""The built-in corpora, the baseline model, attacks that flip it, the sanitiser defence
evaluated naively and adaptively, text files and the ``rampart attack-text`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rampart.errors import ConfigError, DataLoadError, ModelLoadError, TextInputError
from rampart.text import WordAttack
from rampart.text.adaptive import adaptive_evaluation, adaptive_table
from rampart.text.baseline import BaselineTextModel, train_baseline
from rampart.text.bidi import BidiReorder
from rampart.text.char_edits import CharEdits
from rampart.text.corpus import load_corpus, sentiment_corpus, spam_corpus
from rampart.text.files import load_labelled_texts
from rampart.text.homoglyphs import Homoglyphs
from rampart.text.invisible import InvisibleCharacters
from rampart.text.sanitize import SanitisedClassifier, Sanitiser


@pytest.fixture(scope="module")
def sentiment() -> tuple[list[str], list[int]]:
    return sentiment_corpus(1300, seed=1)


@pytest.fixture(scope="module")
def baseline(sentiment: tuple[list[str], list[int]]) -> BaselineTextModel:
    texts, labels = sentiment
    return train_baseline(texts[:1000], labels[:1000], epochs=4, seed=0)


def test_corpora_are_seeded_and_balanced() -> None:
    a, la = sentiment_corpus(400, seed=3)
    b, lb = sentiment_corpus(400, seed=3)
    assert a == b and la == lb
    assert sum(la) == 200
    assert sentiment_corpus(400, seed=4)[0] != a
    assert len(set(a)) > 300
    spam, ls = spam_corpus(100, seed=0)
    assert sum(ls) == 50 and all(t.strip() for t in spam)
    texts, labels, names = load_corpus("spam", 10)
    assert names == ["ham", "spam"] and len(texts) == 10
    with pytest.raises(ConfigError, match="unknown corpus"):
        load_corpus("poetry")


def test_baseline_learns_and_round_trips(baseline: BaselineTextModel, tmp_path: Path,
                                         sentiment: tuple[list[str], list[int]]) -> None:
    texts, labels = sentiment
    model = baseline.classifier()
    accuracy = float((model.predict(texts[1000:]) == torch.tensor(labels[1000:])).float().mean())
    assert accuracy >= 0.95
    path = baseline.save(tmp_path / "m.safetensors")
    loaded = BaselineTextModel.load(path)
    assert torch.equal(loaded.predict_logits(texts[:50]), baseline.predict_logits(texts[:50]))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        BaselineTextModel.load(tmp_path / "bad.safetensors")
    with pytest.raises(ModelLoadError, match="no text model"):
        BaselineTextModel.load(tmp_path / "missing.safetensors")
    with pytest.raises(TextInputError, match="text 1 is empty"):
        BaselineTextModel().fit(["good", ""], [1, 0])


def test_attacks_flip_the_baseline(baseline: BaselineTextModel,
                                   sentiment: tuple[list[str], list[int]]) -> None:
    texts, labels = sentiment[0][1000:1040], sentiment[1][1000:1040]
    model = baseline.classifier()
    sanitiser = Sanitiser()
    defended = SanitisedClassifier(model, sanitiser)
    for transformation in (CharEdits(), InvisibleCharacters(max_edits=2), Homoglyphs(),
                           BidiReorder()):
        before = model.queries
        result = WordAttack(transformation, max_queries=300)(model, texts, labels)
        assert model.queries - before == int(result.queries.sum())  # exact accounting
        assert int(result.queries.max()) <= 300
        won = result.success
        assert float(won.float().mean()) >= 0.2, transformation.name
        adversarial = [a for a, s in zip(result.adversarial, won.tolist(), strict=True) if s]
        flipped = model.predict(adversarial)
        assert (flipped != torch.tensor(labels)[won]).all()
        if transformation.name != "char-edits":
            # The sanitiser undoes every Unicode trick exactly, so the label comes back.
            originals = [o for o, s in zip(result.original, won.tolist(), strict=True) if s]
            assert sanitiser.sanitise(adversarial) == originals
            assert (defended.predict(adversarial) == torch.tensor(labels)[won]).all()


def test_adaptive_evaluation(baseline: BaselineTextModel,
                             sentiment: tuple[list[str], list[int]]) -> None:
    texts, labels = sentiment[0][1040:1070], sentiment[1][1040:1070]
    attacks = [WordAttack(CharEdits(), max_queries=200),
               WordAttack(Homoglyphs(), max_queries=200)]
    rows, clean = adaptive_evaluation(baseline.classifier(), attacks, texts, labels)
    assert clean["clean_fpr"] == 0.0
    typo, glyph = rows
    assert typo.bare > 0 and typo.adaptive > 0 and typo.evasive > 0
    assert glyph.bare > 0 and glyph.naive == 0 and glyph.adaptive == 0 and glyph.evasive == 0
    assert glyph.detected == 1.0 and typo.detected == 0.0
    assert "| homoglyphs |" in adaptive_table(rows)


def test_adaptive_evaluation_reuses_bare_results(baseline: BaselineTextModel,
                                                 sentiment: tuple[list[str], list[int]]) -> None:
    """Bare results the caller already has give the same rows as re-running the bare attack on
    the subset (a text's outcome does not depend on the other texts)."""
    texts, labels = sentiment[0][1100:1116], list(sentiment[1][1100:1116])
    for i in (0, 5, 9):  # wrong labels: these texts drop out of the subset
        labels[i] = 1 - labels[i]
    model = baseline.classifier()
    attacks = [WordAttack(CharEdits(max_candidates=4), max_queries=150, seed=3),
               WordAttack(InvisibleCharacters(max_candidates=4), max_queries=150, seed=3)]
    fresh, clean = adaptive_evaluation(model, attacks, texts, labels)
    bare = [attack(model, texts, labels) for attack in attacks]
    model.reset_queries()
    reused, clean_again = adaptive_evaluation(model, attacks, texts, labels, bare_results=bare)
    assert fresh[0].attacked == len(texts) - 3
    assert reused == fresh and clean_again == clean
    assert fresh[0].bare > 0
    with pytest.raises(ConfigError, match="one per attack"):
        adaptive_evaluation(model, attacks, texts, labels, bare_results=bare[:1])
    with pytest.raises(ConfigError, match="not that attack's result"):
        adaptive_evaluation(model, attacks, texts[1:], labels[1:], bare_results=bare)


def test_text_files(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('text,label\n"good, fine film",pos\nawful film,neg\n', encoding="utf-8")
    texts, labels, names = load_labelled_texts(csv_path)
    assert texts == ["good, fine film", "awful film"] and labels == [1, 0]
    assert names == ["neg", "pos"]
    txt = tmp_path / "t.txt"
    txt.write_text("1\tgreat\n\n0\tbad\n", encoding="utf-8")
    assert load_labelled_texts(txt)[:2] == (["great", "bad"], [1, 0])
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("1\tgreat\n0\tcafé\n".encode("latin-1"))
    with pytest.raises(TextInputError, match=r"byte 0xe9 at byte offset 13 \(line 2\)"):
        load_labelled_texts(bad)
    with pytest.raises(DataLoadError, match="no 'text' column"):
        (tmp_path / "c.csv").write_text("body,label\nx,1\n")
        load_labelled_texts(tmp_path / "c.csv")
    with pytest.raises(TextInputError, match="line 3: the text is empty"):
        (tmp_path / "e.csv").write_text("text,label\nok,1\n,0\n")
        load_labelled_texts(tmp_path / "e.csv")
    with pytest.raises(DataLoadError, match="only one class"):
        (tmp_path / "one.txt").write_text("1\ta\n1\tb\n")
        load_labelled_texts(tmp_path / "one.txt")
    with pytest.raises(DataLoadError, match="no file"):
        load_labelled_texts(tmp_path / "missing.csv")
    broken = tmp_path / "quote.csv"
    broken.write_text('text,label\n"good film,1\nbad film,0\n', encoding="utf-8")
    with pytest.raises(DataLoadError, match=r"row starting on line 2: unexpected end.*quote"):
        load_labelled_texts(broken)
    (tmp_path / "stray.csv").write_text('text,label\nfine,1\n"good" film,1\nbad,0\n')
    with pytest.raises(DataLoadError, match="not valid CSV in the row starting on line 3"):
        load_labelled_texts(tmp_path / "stray.csv")


def test_baseline_save_and_load_errors(baseline: BaselineTextModel, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from rampart.text.baseline import FORMAT

    tensors = {k: v.contiguous() for k, v in baseline.state_dict().items()}
    for name, metadata in (("none", {"format": FORMAT}),
                           ("json", {"format": FORMAT, "settings": "{not json"}),
                           ("keys", {"format": FORMAT, "settings": '{"dim": 32}'})):
        save_file(tensors, str(tmp_path / f"{name}.safetensors"), metadata=metadata)
        with pytest.raises(ModelLoadError, match="missing or damaged model settings"):
            BaselineTextModel.load(tmp_path / f"{name}.safetensors")
    with pytest.raises(ConfigError, match="cannot write the text model"):
        baseline.save(tmp_path)  # a folder
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot write the text model"):
        baseline.save(tmp_path / "file" / "m.safetensors")  # its parent is a file


def test_attack_text_command(tmp_path: Path) -> None:
    from rampart.cli import app

    runner = CliRunner()
    out = tmp_path / "report"
    model_path = tmp_path / "baseline.safetensors"
    result = runner.invoke(app, [
        "attack-text", "--samples", "12", "--train", "500", "--max-queries", "150",
        "--attacks", "char-edits,invisible,bidi", "--sanitiser", "--out", str(out),
        "--save-model", str(model_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "char-edits" in result.output and "naive" in result.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema"] == "rampart.text-attack"
    assert [row["attack"] for row in doc["attacks"]] == ["char-edits", "invisible", "bidi"]
    assert all(0 <= row["success_rate"] <= 1 for row in doc["attacks"])
    # Invisible characters never reach the reports raw.
    for name in ("index.html", "summary.md"):
        page = (out / name).read_text(encoding="utf-8")
        assert "\u200b" not in page and "\u202e" not in page
    assert doc["examples"]
    assert "&lt;U+200" in (out / "summary.md").read_text()  # shown as <U+200B> when rendered
    # The saved model is reused; a CSV works as data.
    csv_path = tmp_path / "texts.csv"
    texts, labels = sentiment_corpus(8, seed=9)
    csv_path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in
                                                 zip(texts, labels, strict=True)))
    result = runner.invoke(app, [
        "attack-text", "--data", str(csv_path), "--model", str(model_path), "--attacks",
        "homoglyphs", "--max-queries", "50", "--out", str(tmp_path / "r2"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["data"]["evaluated"] == 8


@pytest.mark.parametrize(("args", "message"), [
    (["--attacks", "teleport"], "unknown text attack"),
    (["--max-rate", "0"], "--max-rate"),
    (["--max-edit-distance", "-1"], "--max-edit-distance: max_distance must be >= 0"),
    (["--data", "missing.csv"], "no file"),
    (["--model", "nowhere.bin"], "--model"),
])
def test_attack_text_command_errors(args: list[str], message: str, tmp_path: Path) -> None:
    from rampart.cli import app

    result = CliRunner().invoke(app, ["attack-text", "--samples", "4", "--train", "50",
                                      "--out", str(tmp_path), "--quiet", *args])
    assert result.exit_code == 2
    assert message in result.output
