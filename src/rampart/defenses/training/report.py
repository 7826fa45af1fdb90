"""The training report: per-epoch metrics as JSON and an HTML page with training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rampart.defenses.training.history import TrainingHistory
from rampart.evaluate.figures import line_chart
from rampart.evaluate.html_report import HtmlReport

_STOPS = {
    "completed": ("pass", "trained every epoch"),
    "early-stopping": ("info", "stopped early: robust validation accuracy stopped improving"),
    "catastrophic-overfitting": ("warn", "catastrophic overfitting: rolled back to the best "
                                 "epoch and stopped"),
}


def training_page(history: TrainingHistory, title: str,
                  facts: dict[str, Any] | None = None) -> HtmlReport:
    """One self-contained page: headline numbers, accuracy / loss / eps curves, the epoch
    table and the settings."""
    settings = history.settings
    subtitle = (f"{settings.get('method', '?')} · {settings.get('norm', '?')} eps "
                f"{settings.get('eps', '?')} · {len(history.epochs)} epochs")
    page = HtmlReport(title, subtitle=subtitle, facts=facts or {})
    verdict, text = _STOPS.get(history.stop_reason, ("info", history.stop_reason))
    page.headline(verdict, text)
    final = history.final
    summary = page.section("summary", "Summary")
    if final is not None:
        summary.metrics({
            "clean val accuracy": final.clean_accuracy,
            "robust val accuracy (PGD)": final.robust_accuracy,
            "returned epoch": final.epoch,
            "best epoch": history.best_epoch,
        }, formats={"clean val accuracy": "pct", "robust val accuracy (PGD)": "pct",
                    "returned epoch": "int", "best epoch": "int"})
    for record in history.epochs:
        if record.note:
            summary.note(f"epoch {record.epoch}: {record.note}",
                         tone="warn" if record.rolled_back else "info")
    for note in history.notes:
        summary.note(note)

    curves = page.section("curves", "Training curves")
    epochs = history.series("epoch")
    accuracy = {"train (on training inputs)": (epochs, history.series("train_accuracy"))}
    for key, label in (("clean_accuracy", "clean validation"),
                       ("robust_accuracy", "robust validation (PGD)"),
                       ("fgsm_accuracy", "FGSM validation")):
        values = history.series(key)
        if any(v is not None for v in values):
            pairs = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
            accuracy[label] = ([e for e, _ in pairs], [v for _, v in pairs])
    marks = {} if history.final_epoch is None else {"returned weights": history.final_epoch}
    curves.figure(line_chart(accuracy, title="Accuracy per epoch", xlabel="epoch",
                             ylabel="accuracy", percent=True, vlines=marks),
                  "Robust accuracy is measured at the full eps on the validation subset.")
    curves.figures([
        (line_chart({"train loss": (epochs, history.series("train_loss"))},
                    title="Training loss", xlabel="epoch", size=(360, 260)), ""),
        (line_chart({"eps": (epochs, history.series("eps"))}, title="Training eps",
                    xlabel="epoch", size=(360, 260)), "the eps curriculum"),
    ])
    page.section("epochs", "Epochs").table(
        [_row(r) for r in history.epochs],
        columns={"epoch": "epoch", "eps": "eps", "lr": "lr", "train_loss": "train loss",
                 "train_accuracy": "train acc", "clean_accuracy": "clean val",
                 "robust_accuracy": "robust val", "fgsm_accuracy": "FGSM val",
                 "seconds": "seconds", "flag": "note"},
        formats={"train_accuracy": "pct", "clean_accuracy": "pct", "robust_accuracy": "pct",
                 "fgsm_accuracy": "pct", "seconds": "float:2", "train_loss": "float:4"})
    page.section("settings", "Settings").key_values(
        {k: v for k, v in settings.items() if v is not None})
    page.environment(seed=settings.get("seed"))
    return page


def _row(record: Any) -> dict[str, Any]:
    flag = "rolled back" if record.rolled_back else ("best" if record.best else "")
    return {**vars(record), "flag": flag}


def write_training_outputs(history: TrainingHistory, out_dir: str | Path, title: str,
                           html: bool = True, facts: dict[str, Any] | None = None
                           ) -> dict[str, str]:
    """``metrics.json`` (and ``index.html``) in ``out_dir``; returns their paths by kind."""
    out = Path(out_dir)
    paths = {"metrics": str(history.save_json(out / "metrics.json"))}
    if html:
        paths["html"] = str(training_page(history, title, facts).write(out / "index.html"))
    return paths
