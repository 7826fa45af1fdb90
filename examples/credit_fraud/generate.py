"""Write the synthetic credit-fraud data (train.csv, test.csv) and its schema.yaml here.

    python examples/credit_fraud/generate.py [--rows 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rampart.tabular.credit_fraud import write_csv, write_schema

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4000, help="training rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_csv(HERE / "train.csv", n=args.rows, seed=args.seed)
    write_csv(HERE / "test.csv", n=max(args.rows // 4, 100), seed=args.seed + 1)
    write_schema(HERE / "schema.yaml")
    print(f"wrote {HERE / 'train.csv'}, {HERE / 'test.csv'} and {HERE / 'schema.yaml'}")


if __name__ == "__main__":
    main()
