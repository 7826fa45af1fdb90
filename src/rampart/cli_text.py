"""``rampart attack-text``: character, Unicode and synonym attacks on a text classifier.

``run_text_attack_command`` does the work (load or train the model, load the texts, run each
attack, optionally evaluate the sanitiser naively and adaptively, write the reports) so it
can be tested without a terminal; the Typer command at the bottom parses, shows progress and
prints, and is registered in ``cli.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rampart.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:  # the CLI imports this module at start-up: keep torch out of it
    from rampart.text.classifier import TextClassifier
    from rampart.text.report import TextAttackReport

DEFAULT_OUT = Path("reports/attack-text")


@dataclass
class TextAttackRequest:
    """Everything ``rampart attack-text`` was asked for."""

    data: str = "sentiment"
    text_column: str = "text"
    label_column: str = "label"
    model: Path | None = None
    save_model: Path | None = None
    attacks: list[str] | None = None  # None: every attack that can run here
    samples: int = 100
    train: int = 2000
    max_queries: int = 500
    max_edits: int = 1
    max_rate: float | None = 0.3
    stopwords: bool = True
    max_edit_distance: int | None = None
    min_similarity: float | None = None
    sanitiser: bool = False
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    out_dir: Path = field(default_factory=lambda: DEFAULT_OUT)

    def check(self) -> None:
        """Refuse options that cannot work, before anything is loaded or trained."""
        from rampart.text.registry import TRANSFORMATIONS

        for name, value in (("--samples", self.samples), ("--train", self.train),
                            ("--max-queries", self.max_queries),
                            ("--max-edits", self.max_edits), ("--batch-size", self.batch_size)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if self.max_rate is not None and not 0 < self.max_rate <= 1:
            raise ConfigError(f"--max-rate must be in (0, 1], got {self.max_rate}.")
        if self.min_similarity is not None and not -1 <= self.min_similarity <= 1:
            raise ConfigError(f"--min-similarity must be in [-1, 1], got {self.min_similarity}.")
        for name in self.attacks or []:
            if name not in TRANSFORMATIONS:
                raise ConfigError(f"unknown text attack {name!r}; choose from "
                                  f"{', '.join(TRANSFORMATIONS)}.")
        if self.attacks is not None and not self.attacks:
            raise ConfigError("--attacks needs at least one attack name.")


def _split(texts: list[str], labels: list[int], n_eval: int, seed: int
           ) -> tuple[list[str], list[int], list[str], list[int]]:
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    cut = len(order) - n_eval
    train, held = order[:cut], order[cut:]
    return ([texts[i] for i in train], [labels[i] for i in train],
            [texts[i] for i in held], [labels[i] for i in held])


def _load_data(request: TextAttackRequest) -> dict[str, Any]:
    from rampart.text.corpus import CORPORA, load_corpus
    from rampart.text.files import load_labelled_texts

    if request.data in CORPORA:
        total = request.samples + (0 if request.model else request.train)
        texts, labels, names = load_corpus(request.data, max(total, 2), request.seed)
        source = f"built-in {request.data} corpus (seed {request.seed})"
    else:
        texts, labels, names = load_labelled_texts(
            request.data, text_column=request.text_column, label_column=request.label_column)
        source = request.data
    if request.model:
        n_eval = min(request.samples, len(texts))
    else:
        n_eval = min(request.samples, max(1, len(texts) * 3 // 10))
        if len(texts) - n_eval < 2:
            raise ConfigError(f"{request.data} has too few texts ({len(texts)}) to train a "
                              "baseline and attack it; pass --model or more texts.")
    train_x, train_y, eval_x, eval_y = _split(texts, labels, n_eval, request.seed)
    return {"source": source, "names": names, "train": (train_x, train_y),
            "eval": (eval_x, eval_y)}


def _load_model(request: TextAttackRequest, data: dict[str, Any]
                ) -> tuple[TextClassifier, dict[str, Any]]:
    from rampart.text.baseline import BaselineTextModel

    names = data["names"]
    if request.model is None:
        train_x, train_y = data["train"]
        model = BaselineTextModel(max(len(names), max(train_y) + 1), labels=names)
        model.fit(train_x, train_y, seed=request.seed)
        info = {"name": "baseline (trained here)", "trained_on": len(train_x)}
        if request.save_model:
            info["saved"] = str(model.save(request.save_model))
        return model.classifier(batch_size=request.batch_size), info
    path = Path(request.model)
    if path.is_file() and path.suffix == ".safetensors":
        model = BaselineTextModel.load(path)
        return model.classifier(batch_size=request.batch_size), {"name": str(path)}
    if path.is_dir():
        from rampart.text.hf import HuggingFaceClassifier

        clf = HuggingFaceClassifier.from_pretrained(path, device=request.device,
                                                    batch_size=request.batch_size)
        return clf, {"name": str(path), "kind": "huggingface"}
    raise ModelLoadError(f"--model {path}: give a baseline .safetensors file (from "
                         "--save-model) or a Hugging Face model directory (save_pretrained).")


def _attacks(request: TextAttackRequest) -> list[Any]:
    from rampart.text import WordAttack
    from rampart.text.constraints import (
        MaxEditDistance,
        MaxModificationRate,
        SentenceSimilarity,
        StopwordsConstraint,
    )
    from rampart.text.registry import available, make_transformation, unavailable

    names = request.attacks if request.attacks is not None else available()
    missing = unavailable()
    for name in names:
        if name in missing:
            raise ConfigError(f"the {name} attack cannot run here: {missing[name]}")
    constraints: list[Any] = []
    if request.stopwords:
        constraints.append(StopwordsConstraint())
    if request.max_rate is not None:
        constraints.append(MaxModificationRate(request.max_rate))
    if request.max_edit_distance is not None:
        try:  # MaxEditDistance states the rule; the message names the option
            constraints.append(MaxEditDistance(request.max_edit_distance))
        except ConfigError as exc:
            raise ConfigError(f"--max-edit-distance: {exc}.") from None
    if request.min_similarity is not None:  # the most expensive check goes last
        constraints.append(SentenceSimilarity(request.min_similarity))
    return [WordAttack(make_transformation(name, request.max_edits), constraints,
                       max_queries=request.max_queries, seed=request.seed, name=name)
            for name in names]


def run_text_attack_command(request: TextAttackRequest,
                            progress: Callable[[str, int], None] | None = None
                            ) -> TextAttackReport:
    """Run the request's attacks and write index.html, report.json and summary.md."""
    from rampart.evaluate.environment import collect
    from rampart.text.adaptive import adaptive_evaluation
    from rampart.text.report import TextAttackReport

    request.check()
    attacks = _attacks(request)  # refuses bad constraint settings before any training
    data = _load_data(request)
    model, model_info = _load_model(request, data)
    eval_x, eval_y = data["eval"]
    results = []
    for attack in attacks:
        def step(n: int, name: str = attack.name) -> None:
            if progress is not None:
                progress(name, n)

        results.append(attack(model, eval_x, eval_y, progress=step))
    adaptive_rows: list[Any] = []
    detector: dict[str, Any] = {}
    if request.sanitiser:
        adaptive_rows, detector = adaptive_evaluation(model, attacks, eval_x, eval_y,
                                                      bare_results=results)
    clean_acc = results[0].summary()["clean_accuracy"]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(request).items()}
    report = TextAttackReport(
        model={**model_info, "classes": data["names"], "queries": model.queries},
        data={"name": data["source"], "evaluated": len(eval_x), "clean_accuracy": clean_acc},
        settings=settings, results=results, adaptive=adaptive_rows, detector=detector,
        environment=collect(seed=request.seed))
    out = request.out_dir
    report.save_html(out / "index.html")
    report.save_markdown(out / "summary.md")
    report.save_json(out / "report.json")
    report.model["reports"] = {"html": str(out / "index.html"), "json": str(out / "report.json"),
                               "markdown": str(out / "summary.md")}
    return report


def attack_text(
    data: str = typer.Option("sentiment", "--data", "-d", help="sentiment or spam (built-in "
                             "corpora), or a .csv (text,label columns) / .txt (label<TAB>text)."),
    text_column: str = typer.Option("text", "--text-column", help="CSV column of the texts."),
    label_column: str = typer.Option("label", "--label-column", help="CSV column of labels."),
    model: Path | None = typer.Option(None, "--model", "-m", help="A baseline .safetensors "
                                      "file or a Hugging Face model directory (default: train "
                                      "the baseline on the data)."),
    save_model: Path | None = typer.Option(None, "--save-model", help="Save the baseline "
                                           "trained here to this .safetensors file."),
    attacks: str | None = typer.Option(None, "--attacks", "-a", help="Comma-separated: "
                                       "char-edits, invisible, homoglyphs, bidi, synonyms "
                                       "(default: all that can run here)."),
    samples: int = typer.Option(100, "--samples", "-n", help="Texts to attack."),
    train: int = typer.Option(2000, "--train", help="Training texts from a built-in corpus."),
    max_queries: int = typer.Option(500, "--max-queries", help="Model queries per text."),
    max_edits: int = typer.Option(1, "--max-edits", help="Character edits per word."),
    max_rate: float = typer.Option(0.3, "--max-rate", help="Most share of words changed "
                                   "(1 for no limit)."),
    stopwords: bool = typer.Option(True, "--stopwords/--no-stopwords", help="Leave stopwords "
                                   "unchanged."),
    max_edit_distance: int | None = typer.Option(None, "--max-edit-distance", help="Most "
                                                 "character edits (Levenshtein) per word."),
    min_similarity: float | None = typer.Option(None, "--min-similarity", help="Least "
                                                "sentence-embedding cosine similarity to the "
                                                "original (needs the 'embeddings' extra)."),
    sanitiser: bool = typer.Option(False, "--sanitiser", help="Also evaluate the sanitiser "
                                   "defence and detector, naively and adaptively."),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per model call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N "
                               "(Hugging Face models)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the corpus, split, training and "
                             "attacks."),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help="Report folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Attack a text classifier (typos, invisible characters, homoglyphs, bidi, synonyms).

    Prints success rate, queries and modification rate per attack. Writes index.html,
    report.json and summary.md to --out. Exits 0, or 2 on a usage error.
    """
    from rampart.cli import _progress, _user_errors, out

    with _user_errors():
        names = None
        if attacks is not None:
            names = [a.strip() for a in attacks.split(",") if a.strip()]
        request = TextAttackRequest(
            data=data, text_column=text_column, label_column=label_column, model=model,
            save_model=save_model, attacks=names, samples=samples, train=train,
            max_queries=max_queries, max_edits=max_edits,
            max_rate=None if max_rate >= 1 else max_rate, stopwords=stopwords,
            max_edit_distance=max_edit_distance, min_similarity=min_similarity,
            sanitiser=sanitiser, batch_size=batch_size, device=device, seed=seed,
            out_dir=out_dir)
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("attacking", total=None)

            def on_text(name: str, n: int) -> None:
                bar.update(task, advance=n, description=name)

            report = run_text_attack_command(request, on_text)
        if as_json:
            from rampart.evaluate.json_report import to_jsonable

            doc = report.to_dict()
            doc.pop("per_sample")
            out.print_json(data=to_jsonable(doc))
        else:
            _print_report(report)


def _print_report(report: TextAttackReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from rampart.cli import out
    from rampart.text.report import example_rows

    data = report.data
    table = Table(title=f"Text attacks on {escape(str(report.model.get('name')))}",
                  caption=f"{escape(str(data['name']))}: {data['evaluated']} texts, clean "
                  f"accuracy {100 * data['clean_accuracy']:.1f}%. success: share of correctly "
                  "classified texts flipped; queries: model calls per text; modified: share "
                  "of words changed (successful texts)")
    for column in ("attack", "success", "queries", "modified", "time s"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    for row in report.rows():
        table.add_row(escape(row["attack"]), f"{100 * row['success_rate']:.1f}%",
                      f"{row['mean_queries']:.1f}", f"{100 * row['mean_modification_rate']:.1f}%",
                      f"{row['runtime']:.1f}")
    out.print(table)
    if report.adaptive:
        t2 = Table(title="Sanitiser: naive vs adaptive (attack success)",
                   caption=f"detector FPR on clean texts "
                   f"{100 * float(report.detector.get('clean_fpr') or 0):.1f}%")
        for column in ("attack", "bare", "naive", "adaptive", "detected", "evades detector"):
            t2.add_column(column, justify="left" if column == "attack" else "right")
        for r in report.adaptive:
            det = "-" if r.detected is None else f"{100 * r.detected:.0f}%"
            t2.add_row(escape(r.attack), f"{100 * r.bare:.0f}%", f"{100 * r.naive:.0f}%",
                       f"{100 * r.adaptive:.0f}%", det, f"{100 * r.evasive:.0f}%")
        out.print(t2)
    for result in report.results:
        for ex in example_rows(result, 1):
            out.print(f"{escape(ex['attack'])}: {escape(ex['original'])} -> "
                      f"{escape(ex['adversarial'])}", highlight=False, soft_wrap=True)
    for kind, path in report.model.get("reports", {}).items():
        out.print(f"{kind}: {path}", highlight=False)
