"""The ``--target`` options that ``rampart attack``, ``audit`` and ``extract`` share.

Declared once so the three commands spell and explain them the same way; each command turns
them into a ``TargetSpec`` with ``rampart.blackbox.spec.spec_from_flags``.
"""

from __future__ import annotations

import typer

TARGET = typer.Option(None, "--target", "-t", help="A model to query instead of --model: "
                      "http(s)://host/predict, model.onnx or file.py:function (see "
                      "--target-config).")
TARGET_CONFIG = typer.Option(None, "--target-config", help="YAML/JSON settings of an HTTP "
                             "target: request/response mapping, auth, batching, retries, rate.")
NUM_CLASSES = typer.Option(None, "--num-classes", help="Classes of the --target (default: the "
                           "data's).")
INPUT_SHAPE = typer.Option(None, "--input-shape", help="Shape of one input of the --target, "
                           "e.g. 1,28,28 (default: the data's).")
SCORES = typer.Option(None, "--scores", help="The --target's scores: probabilities or logits.")
QUERY_LOG = typer.Option(None, "--query-log", help="Append one JSON line per query to the "
                         "--target to this file.")
MAX_QUERIES = typer.Option(None, "--max-queries", help="Stop after this many queries to the "
                           "--target in total.")
QUERIES = typer.Option(None, "--queries", help="Query budget per sample of the black-box "
                       "attacks.")
