"""Train the example MLP on train.csv and save it as mlp.safetensors.

    python examples/credit_fraud/train_mlp.py
"""

from __future__ import annotations

from pathlib import Path

from rampart.loading import save_weights
from rampart.tabular import load_csv, train_mlp

HERE = Path(__file__).resolve().parent


def main() -> None:
    data = load_csv(HERE / "train.csv", HERE / "schema.yaml")
    net = train_mlp(data.x, data.y, epochs=60, seed=0)
    test = load_csv(HERE / "test.csv", HERE / "schema.yaml")
    accuracy = float((net(test.x).argmax(dim=1) == test.y).float().mean())
    save_weights(net, HERE / "mlp.safetensors")
    print(f"test accuracy {accuracy:.3f}; saved {HERE / 'mlp.safetensors'}")


if __name__ == "__main__":
    main()
