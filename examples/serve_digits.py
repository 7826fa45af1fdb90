"""Serve a small digits model over HTTP, so ``rampart attack --target`` has something to attack.

It trains the digits CNN on scikit-learn's 8x8 digits (a few seconds) and answers
``POST /predict`` with ``{"inputs": [[[[...]]], ...]}`` (a batch shaped (N, 1, 8, 8), pixels
in [0, 1]) by ``{"probabilities": [[...], ...]}``, or only ``{"labels": [...]}`` with
``--labels-only``. With ``--token-env NAME`` it wants ``Authorization: Bearer $NAME``.
Needs the ``serve`` extra (FastAPI and uvicorn).

    .venv/bin/python examples/serve_digits.py --port 8000 &
    rampart attack --target http://127.0.0.1:8000/predict --eps 0.3 --limit 100
    rampart attack --target http://127.0.0.1:8000/predict --knowledge decision --eps 0.3
"""

from __future__ import annotations

import argparse
import os
import secrets

import torch
from pydantic import BaseModel

from rampart.data import load_data
from rampart.train import accuracy, fit
from rampart.zoo import digits_cnn


class Batch(BaseModel):
    """The request body: a batch of 8x8 one-channel images."""

    inputs: list[list[list[list[float]]]]


def train(seed: int = 0) -> torch.nn.Module:
    """The digits CNN trained on 1,400 of the 1,797 digits, shuffled with ``seed``."""
    data = load_data("digits")
    x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    torch.manual_seed(seed)
    net = fit(digits_cnn(), x[:1400], y[:1400], epochs=10, seed=seed).eval()
    print(f"held-out accuracy {accuracy(net, x[1400:], y[1400:]):.3f}", flush=True)
    return net


def build_app(net: torch.nn.Module, labels_only: bool = False, token: str | None = None):
    """A FastAPI app answering ``POST /predict`` with the model's probabilities or labels."""
    from fastapi import FastAPI, Header, HTTPException

    app = FastAPI(title="digits model")

    @app.post("/predict")
    def predict(batch: Batch, authorization: str = Header("")) -> dict:
        if token is not None and not secrets.compare_digest(authorization, f"Bearer {token}"):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")
        x = torch.tensor(batch.inputs, dtype=torch.float32)
        if x.shape[1:] != (1, 8, 8) or x.min() < 0 or x.max() > 1:
            raise HTTPException(status_code=422, detail="inputs must be (N, 1, 8, 8) in [0, 1]")
        with torch.no_grad():
            probs = torch.softmax(net(x), dim=1)
        if labels_only:
            return {"labels": probs.argmax(dim=1).tolist()}
        return {"probabilities": probs.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--labels-only", action="store_true", help="answer labels only")
    parser.add_argument("--token-env", help="require a bearer token read from this variable")
    args = parser.parse_args()
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            parser.error(f"{args.token_env} is not set")

    import uvicorn

    torch.set_num_threads(1)
    app = build_app(train(), labels_only=args.labels_only, token=token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
