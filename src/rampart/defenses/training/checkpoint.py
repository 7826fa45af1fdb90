"""Checkpoints of a training run, so an interrupted run resumes where it stopped.

After every epoch the folder gets the weights as safetensors (``epoch-NNNN.safetensors``),
the optimizer state as a ``torch.save`` file of tensors and numbers only
(``epoch-NNNN.optim.pt``, read back with ``torch.load(weights_only=True)``: never a plain
unpickle), the best epoch's weights (``best-NNNN.safetensors``) and ``state.json``: the
epochs done, the history so far, early-stopping counters and the run's settings. The JSON
is written last and atomically, and names the files it belongs to, so a run killed
mid-write leaves the previous epoch's checkpoint intact. Older epoch files are removed once
the new JSON is in place.

Learning rate and eps are functions of the epoch and every epoch reseeds its random
generators, so the saved state is all a resumed run needs to equal an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rampart.errors import ConfigError, ModelLoadError
from rampart.evaluate.atomic import write_text_atomic
from rampart.loading import load_weights, save_weights

STATE_FILE = "state.json"
FORMAT_VERSION = 1


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings that decide a run's results."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of the training data, so a checkpoint is never resumed on other data."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class SavedState:
    """What ``state.json`` says about the last finished epoch."""

    epochs_done: int
    history: dict[str, Any]
    best_epoch: int | None
    bad_epochs: int
    finished: bool
    weights: str
    optimizer: str
    best_weights: str | None


class Checkpoints:
    """The checkpoint folder of one run; ``settings`` must match for a resume."""

    def __init__(self, directory: str | Path, settings: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.settings = settings
        self.key = fingerprint(settings)

    # ------------------------------------------------------------------ reading
    def load(self) -> SavedState | None:
        """The saved state, or None when the folder holds no checkpoint yet."""
        path = self.dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            saved = data["settings"]
            state = SavedState(
                epochs_done=int(data["epochs_done"]), history=data["history"],
                best_epoch=data.get("best_epoch"), bad_epochs=int(data.get("bad_epochs", 0)),
                finished=bool(data.get("finished", False)), weights=str(data["weights"]),
                optimizer=str(data["optimizer"]), best_weights=data.get("best_weights"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the checkpoint {path} is unreadable ({exc}); delete the folder or start over "
                "(resume=False, CLI --fresh)."
            ) from None
        if data.get("fingerprint") != self.key:
            changed = sorted(k for k in set(saved) | set(self.settings)
                             if saved.get(k) != self.settings.get(k))
            raise ConfigError(
                f"the checkpoint in {self.dir} was written by a run with other settings "
                f"(different: {', '.join(changed) or 'format'}); resume with the same settings, "
                "start over (resume=False, CLI --fresh) or use another checkpoint folder."
            )
        return state

    def restore(self, state: SavedState, net: nn.Module,
                optimizer: torch.optim.Optimizer | None) -> None:
        """Load the last epoch's weights (and optimizer state) into ``net`` / ``optimizer``."""
        self.load_weights(net, state.weights)
        if optimizer is None:
            return
        path = self.dir / state.optimizer
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            optimizer.load_state_dict(saved["optimizer"])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(
                f"could not restore the optimizer state from {path} ({exc}); start over "
                "(resume=False, CLI --fresh)."
            ) from None

    def load_weights(self, net: nn.Module, name: str) -> None:
        try:
            load_weights(net, self.dir / name)
        except ModelLoadError as exc:
            raise ConfigError(f"the checkpoint is damaged: {exc} Start over (resume=False, "
                              "CLI --fresh).") from None

    # ------------------------------------------------------------------ writing
    def save(self, *, epochs_done: int, net: nn.Module, optimizer: torch.optim.Optimizer,
             history: dict[str, Any], best_epoch: int | None,
             best_state: dict[str, torch.Tensor] | None, bad_epochs: int,
             finished: bool) -> None:
        """Write the checkpoint of ``epochs_done`` epochs (call on the main process only)."""
        previous = self._current_files()
        weights = f"epoch-{epochs_done:04d}.safetensors"
        optim = f"epoch-{epochs_done:04d}.optim.pt"
        save_weights(net, self.dir / weights)
        try:
            torch.save({"optimizer": optimizer.state_dict()}, self.dir / optim)
        except OSError as exc:
            raise ConfigError(f"could not write the checkpoint to {self.dir} ({exc}); check "
                              "that the folder is writable.") from None
        best_name = None
        if best_epoch is not None and best_state is not None:
            best_name = f"best-{best_epoch:04d}.safetensors"
            if not (self.dir / best_name).is_file():
                _save_state(best_state, self.dir / best_name)
        document = {
            "format": FORMAT_VERSION, "fingerprint": self.key, "settings": self.settings,
            "epochs_done": epochs_done, "finished": finished, "weights": weights,
            "optimizer": optim, "best_weights": best_name, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "history": history,
        }
        write_text_atomic(self.dir / STATE_FILE,
                          json.dumps(document, indent=1, default=str) + "\n")
        keep = {weights, optim, best_name}
        for name in previous - keep:
            with contextlib.suppress(OSError):
                (self.dir / name).unlink()

    def _current_files(self) -> set[str]:
        if not self.dir.is_dir():
            return set()
        return {p.name for p in self.dir.iterdir()
                if p.name.startswith(("epoch-", "best-")) and p.is_file()}


def _save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write weights kept in memory (the best epoch's) as safetensors, like ``save_weights``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except OSError as exc:
        raise ConfigError(f"could not write {path} ({exc}); check that the folder is "
                          "writable.") from None
