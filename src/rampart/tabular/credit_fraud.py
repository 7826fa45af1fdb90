"""A synthetic credit-card-fraud dataset with realistic feature constraints, and its schema.

One row is a card transaction: its amount and merchant type, the account's balance before
and after, transaction counts and spend over sliding windows, the account's age, home
country and 30-day average, the distance from home and the hour. The constraints are those
of a real feature pipeline: the balance arithmetic, window counts that grow with the window,
the 24-hour spend including this transaction, integer counts and hours, one-hot merchant and
country, and features the fraudster cannot change (account age, country, history). Counts
and the 24-hour spend may only grow: a fraudster can add transactions, not remove them.

Labels come from a logistic model of the usual fraud signals (large amount against the
account's average, a young account, bursts of transactions, online/electronics merchants,
distance from home, night hours, foreign country) with noise, so a classifier reaches high
but imperfect accuracy. Used by ``examples/credit_fraud``, ``rampart demo`` and
``benchmarks/tabular.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

MERCHANTS = ("grocery", "electronics", "travel", "online")
COUNTRIES = ("domestic", "eu", "other")

SCHEMA: dict[str, Any] = {
    "label": "is_fraud",
    "features": {
        "amount": {"type": "real", "min": 1, "max": 20000},
        "balance_before": {"type": "real", "mutable": False},
        "balance_after": {"type": "real", "min": -2000},
        "amount_24h": {"type": "real", "min": 0, "max_decrease": 0},
        "num_tx_1h": {"type": "integer", "min": 1, "max_decrease": 0},
        "num_tx_24h": {"type": "integer", "min": 1, "max_decrease": 0},
        "num_tx_7d": {"type": "integer", "min": 1, "max_decrease": 0},
        "avg_amount_30d": {"type": "real", "min": 0, "mutable": False},
        "account_age_days": {"type": "integer", "min": 0, "mutable": False},
        "distance_km": {"type": "real", "min": 0, "max": 20000},
        "hour": {"type": "integer", "min": 0, "max": 23},
        "merchant": {"type": "categorical", "columns": [f"merchant_{m}" for m in MERCHANTS]},
        "country": {"type": "categorical", "mutable": False,
                    "columns": [f"country_{c}" for c in COUNTRIES]},
    },
    "relations": [
        "balance_after == balance_before - amount",
        "amount_24h >= amount",
        "num_tx_1h <= num_tx_24h",
        "num_tx_24h <= num_tx_7d",
    ],
    "tolerance": {"atol": 0.01, "rtol": 1e-5},
}


def generate(n: int = 4000, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``n`` transactions: the column names (schema order), rows ``(n, d)`` and 0/1 labels."""
    rng = np.random.default_rng(seed)
    age = rng.gamma(2.0, 400.0, n).round().clip(0, 7000)
    country = rng.choice(3, n, p=[0.8, 0.15, 0.05])
    merchant = rng.choice(4, n, p=[0.4, 0.2, 0.1, 0.3])
    avg30 = np.round(rng.lognormal(3.8, 0.6, n), 2)
    amount = np.round(np.clip(avg30 * rng.lognormal(0.0, 0.9, n), 1, 20000), 2)
    balance_before = np.round(rng.lognormal(7.5, 1.0, n), 2)
    balance_after = np.round(balance_before - amount, 2)
    balance_after = np.maximum(balance_after, -2000)
    balance_before = np.round(balance_after + amount, 2)
    n7 = 1 + rng.poisson(12, n)
    n24 = np.minimum(1 + rng.poisson(2, n), n7)
    n1 = np.minimum(1 + rng.poisson(0.3, n), n24)
    amount_24h = np.round(amount + rng.gamma(1.5, avg30) * (n24 - 1), 2)
    distance = np.round(rng.exponential(15, n) * np.where(country == 0, 1.0, 40.0), 1)
    hour = rng.integers(0, 24, n)
    night = ((hour < 6) | (hour > 22)).astype(float)
    logit = (-4.4 + 1.6 * np.log(amount / avg30 + 0.1) - 0.0012 * age
             + 0.9 * (n1 - 1) + 0.25 * (n24 - 2) + 1.2 * (merchant == 1) + 0.8 * (merchant == 3)
             + 0.35 * np.log1p(distance) + 1.0 * night + 1.0 * (country == 2)
             + rng.normal(0, 0.7, n))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    columns = ["amount", "balance_before", "balance_after", "amount_24h", "num_tx_1h",
               "num_tx_24h", "num_tx_7d", "avg_amount_30d", "account_age_days", "distance_km",
               "hour", *[f"merchant_{m}" for m in MERCHANTS],
               *[f"country_{c}" for c in COUNTRIES]]
    x = np.column_stack([amount, balance_before, balance_after, amount_24h, n1, n24, n7, avg30,
                         age, distance, hour, np.eye(4)[merchant], np.eye(3)[country]])
    return columns, x, y


def write_csv(path: str | Path, n: int = 4000, seed: int = 0) -> Path:
    """Write ``n`` generated transactions (with the ``is_fraud`` label) to ``path``."""
    columns, x, y = generate(n, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    integer = {"num_tx_1h", "num_tx_24h", "num_tx_7d", "account_age_days", "hour"}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*columns, "is_fraud"])
        for row, label in zip(x, y, strict=True):
            cells = [str(int(v)) if c in integer or c.startswith(("merchant_", "country_"))
                     else f"{v:.2f}" for c, v in zip(columns, row, strict=True)]
            writer.writerow([*cells, str(int(label))])
    return path


def write_schema(path: str | Path) -> Path:
    """Write :data:`SCHEMA` as YAML to ``path``."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Feature schema of the synthetic credit-fraud transactions (rampart.tabular).\n"
              "# Column order = feature order; categorical features list their one-hot\n"
              "# columns. Written by rampart.tabular.credit_fraud.write_schema.\n")
    path.write_text(header + yaml.safe_dump(SCHEMA, sort_keys=False))
    return path
