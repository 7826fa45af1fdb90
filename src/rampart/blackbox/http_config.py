"""The settings of an HTTP target (``rampart attack --target-config http.yaml``).

How a batch becomes a request body (a JSON template with a ``"$inputs"`` placeholder), where
the scores or labels are in the answer (a dotted path such as ``predictions.*.probs``), how
to authenticate (a header whose token is read from an environment variable, never from the
file), and how hard to push the server (batching, concurrency, timeouts, retries, rate).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rampart.config_files import read_config_file, validate
from rampart.errors import ConfigError

BATCH = "$inputs"   # the whole request batch, as nested lists
SAMPLE = "$input"   # one sample per request

EXAMPLE = """\
url: http://127.0.0.1:8000/predict
output: scores                 # scores or labels (what the server answers)
scores: probabilities          # probabilities or logits
num_classes: 10
input_shape: [1, 8, 8]
request:
  template: {inputs: $inputs}  # "$inputs": the batch as nested lists; "$input": one sample
response:
  path: probabilities          # dotted path, "*" walks a list: predictions.*.probs
                               # (left out: the body itself if it is a list, else its one
                               # list-valued key, or probabilities/scores/logits/labels...)
auth:                          # optional
  header: Authorization
  scheme: Bearer
  token_env: RAMPART_TOKEN     # the token is read from this environment variable
batch_size: 64                 # samples per request
concurrency: 4                 # requests in flight at once
timeout: 10                    # seconds per request
retries: 3                     # after timeouts, connection errors, 5xx and 429
backoff: 0.5                   # first wait in seconds, doubling up to max_backoff
rate_limit: null               # requests per second (null: as fast as allowed)
"""


class RequestMapping(BaseModel):
    """How a batch becomes the JSON body."""

    model_config = ConfigDict(extra="forbid")

    template: Any = Field(default_factory=lambda: {"inputs": BATCH})
    flatten: bool = False  # send (N, D) rows instead of (N, *input_shape)

    @field_validator("template")
    @classmethod
    def _has_placeholder(cls, value: Any) -> Any:
        found = placeholders(value)
        if not found:
            raise ValueError(f'the template needs a "{BATCH}" (or "{SAMPLE}") placeholder, '
                             f'e.g. {{inputs: {BATCH}}}')
        if len(found) > 1:
            raise ValueError(f'use either "{BATCH}" or "{SAMPLE}" in the template, not both')
        return value

    @property
    def per_sample(self) -> bool:
        """True when every request carries one sample (``"$input"``)."""
        return placeholders(self.template) == {SAMPLE}


class ResponseMapping(BaseModel):
    """Where the answer is in the JSON response."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None  # None: guess (see ``guess_answer``); "": the whole body
    class_names: list[str] | None = None  # map string labels to class indices


class Auth(BaseModel):
    """An auth header; the token itself comes from the environment, never from a file."""

    model_config = ConfigDict(extra="forbid")

    header: str = "Authorization"
    scheme: str = "Bearer"
    token_env: str = "RAMPART_TOKEN"

    def header_value(self) -> str:
        """``"<scheme> <token>"`` with the token from ``token_env``, or a ConfigError."""
        token = os.environ.get(self.token_env)
        if not token:
            raise ConfigError(
                f"the auth token variable {self.token_env} is not set; export it "
                f"(export {self.token_env}=...) or change auth.token_env in the target config."
            )
        return f"{self.scheme} {token}" if self.scheme else token

    def token(self) -> str | None:
        return os.environ.get(self.token_env) or None


class HttpConfig(BaseModel):
    """Everything an HTTP target needs; see ``EXAMPLE``."""

    model_config = ConfigDict(extra="forbid")

    url: str
    method: Literal["POST", "PUT"] = "POST"
    output: Literal["scores", "labels"] = "scores"
    scores: Literal["probabilities", "logits"] = "probabilities"
    num_classes: int | None = Field(None, ge=2)
    input_shape: list[int] | None = None
    request: RequestMapping = Field(default_factory=RequestMapping)
    response: ResponseMapping = Field(default_factory=ResponseMapping)
    auth: Auth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(64, ge=1)
    concurrency: int = Field(4, ge=1, le=256)
    timeout: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    backoff: float = Field(0.5, ge=0)
    max_backoff: float = Field(8.0, ge=0)
    rate_limit: float | None = Field(None, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @model_validator(mode="after")
    def _no_secret_headers(self) -> HttpConfig:
        secret = {"authorization", "x-api-key", "api-key", "cookie"}
        leaked = [h for h in self.headers if h.lower() in secret]
        if leaked:
            raise ValueError(
                f"do not put credentials ({', '.join(leaked)}) in headers; use auth with "
                "token_env so the token stays in the environment"
            )
        return self


def load_http_config(path: str | Path | None = None, **overrides: Any) -> HttpConfig:
    """The config in ``path`` (YAML or JSON) with ``overrides`` (CLI flags) on top.

    Overrides that are ``None`` are ignored, so unset flags keep the file's values.
    """
    data = read_config_file(path, "HTTP target", EXAMPLE) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate(HttpConfig, data, f"the HTTP target config {path or '(flags)'}")


def placeholders(template: Any) -> set[str]:
    """The placeholders (``"$inputs"``, ``"$input"``) anywhere in a JSON template."""
    if isinstance(template, str):
        return {template} & {BATCH, SAMPLE}
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values()))
    if isinstance(template, list):
        return set().union(*(placeholders(v) for v in template))
    return set()


def fill(template: Any, value: Any) -> Any:
    """The template with every placeholder replaced by ``value``."""
    if isinstance(template, str) and template in (BATCH, SAMPLE):
        return value
    if isinstance(template, dict):
        return {k: fill(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, value) for v in template]
    return template


def extract(body: Any, path: str) -> Any:
    """The value at the dotted ``path`` in a JSON body; ``*`` maps over a list.

    Raises ``KeyError`` naming the first step that is missing.
    """
    steps = [s for s in path.split(".") if s] if path else []
    return _walk(body, steps, [])


# Keys that usually hold the answer, most specific first (used when response.path is unset).
ANSWER_KEYS = ("probabilities", "probs", "scores", "logits", "predictions", "outputs",
               "output", "labels", "label", "prediction", "class", "result", "results")


def guess_answer(body: Any) -> tuple[str, Any]:
    """Where the answer probably is when no path was configured: ``(path, value)``.

    A list body is the answer; in an object, the first of ``ANSWER_KEYS`` holding a list or
    a number, else its only such key. Raises ``KeyError`` when it cannot tell.
    """
    if isinstance(body, list):
        return "", body
    if isinstance(body, dict):
        usable = {k: v for k, v in body.items()
                  if isinstance(v, list | int | float) and not isinstance(v, bool)}
        for key in ANSWER_KEYS:
            if key in usable:
                return key, usable[key]
        if len(usable) == 1:
            return next(iter(usable.items()))
        keys = ", ".join(map(str, list(body)[:10])) or "none"
        raise KeyError(f"cannot tell which key holds the answer (keys: {keys})")
    raise KeyError(f"the body is a {type(body).__name__}, not a list or an object")


def _walk(node: Any, steps: list[str], seen: list[str]) -> Any:
    if not steps:
        return node
    step, rest = steps[0], steps[1:]
    where = ".".join(seen) or "the top level"
    if step == "*":
        if not isinstance(node, list):
            raise KeyError(f"'*' needs a list at {where}, found {type(node).__name__}")
        return [_walk(item, rest, [*seen, "*"]) for item in node]
    if isinstance(node, dict):
        if step not in node:
            keys = ", ".join(map(str, list(node)[:10])) or "none"
            raise KeyError(f"no key {step!r} at {where} (keys there: {keys})")
        return _walk(node[step], rest, [*seen, step])
    if isinstance(node, list) and step.lstrip("-").isdigit():
        index = int(step)
        if not -len(node) <= index < len(node):
            raise KeyError(f"index {index} is outside the list of {len(node)} at {where}")
        return _walk(node[index], rest, [*seen, step])
    raise KeyError(f"cannot look up {step!r} in a {type(node).__name__} at {where}")
