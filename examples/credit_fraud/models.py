"""The example's models, named on the command line without pickles.

- ``models.py:mlp`` builds the MLP architecture; its weights come from ``train_mlp.py``.
- ``models.py:gradient_boosting`` fits scikit-learn's GradientBoostingClassifier on
  ``train.csv`` when called (a few seconds), so ``--target models.py:gradient_boosting``
  needs no saved model at all.
"""

from __future__ import annotations

from pathlib import Path

from rampart.tabular import TabularMLP, load_csv

HERE = Path(__file__).resolve().parent
NUM_FEATURES = 18  # the columns of schema.yaml


def mlp() -> TabularMLP:
    """The architecture ``train_mlp.py`` trains (standardisation buffers included)."""
    return TabularMLP(NUM_FEATURES, num_classes=2, hidden=(64, 64))


def gradient_boosting():  # noqa: ANN201 - returns a fitted scikit-learn classifier
    """A GradientBoostingClassifier fitted on train.csv."""
    from sklearn.ensemble import GradientBoostingClassifier

    data = load_csv(HERE / "train.csv", HERE / "schema.yaml")
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    return model.fit(data.x.numpy(), data.y.numpy())
