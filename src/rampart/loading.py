"""Loading users' models and weights from the forms a command line can name.

A model spec is ``path/to/file.py:factory``, ``package.module:factory`` or a TorchScript file;
weights are a ``.safetensors`` file or a PyTorch checkpoint read with ``weights_only=True``.
Nothing here ever unpickles arbitrary objects, and every failure is a
:class:`~rampart.errors.ModelLoadError` that says what was wrong and what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from rampart.devices import resolve_device
from rampart.errors import ConfigError, ModelLoadError

__all__ = ["import_attribute", "load_model", "load_weights", "save_weights"]

MODEL_SPEC_FORMS = "path/to/file.py:factory, package.module:factory or a TorchScript file"
MODEL_FILE_SUFFIXES = frozenset({".py", ".pt", ".pth", ".ts", ".jit", ".ptl", ".torchscript"})
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
ARCHITECTURE_HINT = "check that --model builds the same architecture the weights were saved from"
_SHOWN = 5  # how many keys of each kind an error message lists
_module_counter = itertools.count()


def load_model(
    spec: str,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Build the model named by ``spec``, load ``weights`` into it if given, and return it in
    eval mode on ``device`` (left where it is when ``device`` is None)."""
    target = _device(device)
    module = _build(spec, target)
    if weights is not None:
        load_weights(module, weights)
    if target is not None:
        try:
            module = module.to(target)
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(
                f"could not move the model to {target} ({_brief(exc)}); pick another --device."
            ) from None
    return module.eval()


def load_weights(module: nn.Module, weights: str | Path) -> nn.Module:
    """Load a safetensors file or a PyTorch checkpoint into ``module`` (strictly), so the
    architecture from ``--model`` and the numbers from ``--weights`` can come separately."""
    path = Path(weights).expanduser()
    state = _read_weights(path)
    own = module.state_dict()
    state = _strip_wrapper_prefixes(_unwrap_checkpoint(state, path), own)
    tied = _check_fit(own, state, path)
    try:
        module.load_state_dict(state, strict=not tied)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"weights in {str(path)!r} do not fit the model ({_brief(exc)}); {ARCHITECTURE_HINT}."
        ) from None
    return module


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write ``module``'s state_dict as safetensors: a format that holds only tensors, so
    loading it back can never run code."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    tensors = _standalone_tensors(module.state_dict())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"format": "pt"})
    except OSError as exc:
        raise ConfigError(
            f"could not write weights to {str(path)!r} ({exc}); check that the folder is writable."
        ) from None


# ---------------------------------------------------------------- building the model


def _device(device: str | torch.device | None) -> torch.device | None:
    if device is None or isinstance(device, torch.device):
        return device
    return resolve_device(device)


def _build(spec: str, device: torch.device | None) -> nn.Module:
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".py":  # importing it to list names also surfaces its own errors
            raise ModelLoadError(
                f"{spec!r} is a Python file; name the function that builds the model, e.g. "
                f"--model {spec}:build. It defines: {_candidates(_import_file(path))}."
            )
        return _load_torchscript(path, device)
    source, colon, attr = spec.rpartition(":")
    if colon and source and attr:
        if _looks_like_path(source):
            module = _import_file(Path(source).expanduser())
        else:
            module = _import_module(source, attr)
        return _call_factory(module, attr, source)
    if colon or "/" in spec or "\\" in spec or path.suffix.lower() in MODEL_FILE_SUFFIXES:
        raise ModelLoadError(
            f"no model file {spec!r}; check the --model path (forms: {MODEL_SPEC_FORMS})."
        )
    raise ModelLoadError(
        f"cannot tell how to load model {spec!r}; use {MODEL_SPEC_FORMS}, "
        f"e.g. --model {spec}:build."
    )


def import_attribute(spec: str, option: str = "--model") -> Any:
    """The object named by ``path/to/file.py:name`` or ``package.module:name`` (dotted names
    reach into classes); ``option`` is the flag that named it, for error messages."""
    source, colon, attr = spec.rpartition(":")
    if not (colon and source and attr):
        raise ModelLoadError(f"{option} {spec!r} must look like path/to/file.py:name or "
                             "package.module:name.")
    module = (_import_file(Path(source).expanduser()) if _looks_like_path(source)
              else _import_module(source, attr))
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelLoadError(
                f"{source!r} has no {attr!r}; it defines: {_candidates(module)}. "
                f"Write {option} {source}:NAME with one of those."
            ) from None
    return obj


def _looks_like_path(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source or Path(source).exists()


def _load_torchscript(path: Path, device: torch.device | None) -> nn.Module:
    try:
        with warnings.catch_warnings():  # torch 2.x marks TorchScript deprecated; users chose it
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device or "cpu")
    except Exception as exc:  # torch.jit raises RuntimeError, ValueError and others
        raise ModelLoadError(
            f"could not load {str(path)!r} as TorchScript ({_brief(exc)}). A bare model file "
            "must be TorchScript (saved with torch.jit.script(...).save or torch.jit.save); a "
            "plain state_dict goes to --weights, with --model naming a factory that builds "
            f"the architecture, e.g. --model net.py:build --weights {path}."
        ) from None


def _import_file(path: Path) -> ModuleType:
    """Import a user's .py file under a fresh module name, so two files never collide."""
    if not path.is_file():
        raise ModelLoadError(f"no model file {str(path)!r}; check the path given to --model.")
    stem = re.sub(r"\W", "_", path.stem)
    name = f"rampart_user_model_{stem}_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {str(path)!r} as Python; give --model a .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and TorchScript look modules up here
    try:
        with _importable_siblings(path.parent):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise ModelLoadError(
            f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}; fix that error in "
            "the file (run it with python to see the full traceback)."
        ) from exc
    module.__rampart_dir__ = path.parent  # type: ignore[attr-defined]
    return module


def _import_module(name: str, attr: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ModelLoadError(
                f"no Python module named {name!r}; install it, add its folder to PYTHONPATH, "
                f"or point at the file instead: --model path/to/{name.split('.')[-1]}.py:{attr}."
            ) from None
        raise _import_failed(name, exc) from exc
    except (Exception, SystemExit) as exc:
        raise _import_failed(name, exc) from exc


def _import_failed(name: str, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"importing module {name!r} failed: {type(exc).__name__}: {exc}; fix that error "
        "(python -c 'import ...' shows the full traceback)."
    )


@contextmanager
def _importable_siblings(folder: Path | None) -> Iterator[None]:
    """Let a user's file import modules that sit beside it, while it is imported and called."""
    entry = str(folder) if folder is not None else None
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.insert(0, entry)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if added:
            sys.path.remove(entry)  # type: ignore[arg-type]


def _call_factory(module: ModuleType, attr: str, source: str) -> nn.Module:
    factory: Any = module
    for part in attr.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise ModelLoadError(
                f"{source!r} has no {attr!r}; it defines: {_candidates(module)}. "
                f"Write --model {source}:NAME with one of those."
            ) from None
    if isinstance(factory, nn.Module):
        return factory
    if not callable(factory):
        raise ModelLoadError(
            f"{source}:{attr} is a {type(factory).__name__}, not something to call; name a "
            "function or nn.Module class that builds the model."
        )
    try:
        with _importable_siblings(getattr(module, "__rampart_dir__", None)):
            model = factory()
    except Exception as exc:
        raise ModelLoadError(
            f"calling {source}:{attr}() failed: {type(exc).__name__}: {exc}; the factory must "
            "build the model with no arguments (wrap it in a function that fills them in)."
        ) from exc
    if not isinstance(model, nn.Module):
        shown = repr(model)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ModelLoadError(
            f"{source}:{attr}() returned {type(model).__name__} {shown}, not a torch.nn.Module; "
            "make the factory return the model itself."
        )
    return model


def _candidates(module: ModuleType) -> str:
    """Names in ``module`` that could build a model: its functions, nn.Module classes and
    nn.Module instances."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        own = getattr(value, "__module__", None) == module.__name__
        is_class = inspect.isclass(value) and issubclass(value, nn.Module)
        if isinstance(value, nn.Module) or (own and (inspect.isfunction(value) or is_class)):
            names.append(name)
    return ", ".join(names) if names else "no functions or nn.Module classes"


# ---------------------------------------------------------------- weights


def _read_weights(path: Path) -> Any:
    if not path.exists():
        raise ModelLoadError(f"no weights file {str(path)!r}; check the --weights path.")
    if not path.is_file():
        raise ModelLoadError(f"{str(path)!r} is a directory; --weights needs a file.")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        return _read_safetensors(path)
    if _looks_like_torchscript(path):
        raise ModelLoadError(
            f"{str(path)!r} is a TorchScript model, which carries its own weights; pass it as "
            f"--model {path} and leave out --weights."
        )
    return _read_checkpoint(path)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and then a JSON object."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + header_len <= path.stat().st_size


def _looks_like_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding compiled code next to the tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError, ...
        raise ModelLoadError(
            f"could not read {str(path)!r} as safetensors ({_brief(exc)}); the file may be "
            "damaged or in another format, save it again."
        ) from None


def _read_checkpoint(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise ModelLoadError(
                f"{str(path)!r} contains code or Python objects beyond tensors "
                f"({_weights_only_detail(exc)}), which rampart refuses to unpickle. Re-save only "
                "the state_dict, best as safetensors "
                "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors'))."
            ) from None
        raise _unreadable_checkpoint(path, exc) from None
    except Exception as exc:  # RuntimeError, EOFError, ... for damaged or foreign files
        raise _unreadable_checkpoint(path, exc) from None


def _weights_only_detail(exc: Exception) -> str:
    """The part of torch's long weights_only message that names what was refused."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks for {found.group(1)}"
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    if not marker or not lines:
        return "refused by torch.load(weights_only=True)"
    return lines[0] if len(lines[0]) <= 120 else lines[0][:117] + "..."


def _unreadable_checkpoint(path: Path, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not read {str(path)!r} as weights ({_brief(exc)}); --weights takes a "
        ".safetensors file or a state_dict saved with torch.save."
    )


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _unwrap_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict inside ``obj``: itself, or the dict under a usual checkpoint key."""
    for _ in range(len(CHECKPOINT_KEYS) + 1):
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, Mapping):
            break
        key = next((k for k in CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    if isinstance(obj, Mapping):
        keys = _listed([str(k) for k in obj])
        found = f"a dict with keys {keys}"
    else:
        found = f"a {type(obj).__name__}"
    raise ModelLoadError(
        f"{str(path)!r} holds {found}, not a state_dict; rampart expects a dict of tensors, "
        f"possibly under {', '.join(repr(k) for k in CHECKPOINT_KEYS)}. Save "
        "model.state_dict() instead."
    )


def _strip_wrapper_prefixes(
    state: dict[str, torch.Tensor], own: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Drop a prefix that DataParallel or torch.compile added to every key, unless the model
    itself uses it."""
    for prefix in WRAPPER_PREFIXES:
        if not state or not all(k.startswith(prefix) for k in state):
            continue
        if own and all(k.startswith(prefix) for k in own):
            continue
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _check_fit(own: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path) -> bool:
    """Raise a ModelLoadError listing every way ``state`` does not fit the model; return
    whether some keys are legitimately absent because they are tied to ones present."""
    tied = _tied_keys(own, present=state.keys())
    missing = [k for k in own if k not in state and k not in tied]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file has {tuple(state[k].shape)}, model expects {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(own[k], torch.Tensor) and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches {_listed(shapes)}")
    if problems:
        raise ModelLoadError(
            f"weights in {str(path)!r} do not fit the model: {'; '.join(problems)}; "
            f"{ARCHITECTURE_HINT}."
        )
    return bool(tied)


def _tied_keys(own: Mapping[str, Any], present: Any) -> set[str]:
    """Keys absent from the file whose tensor is shared with a key that is present (tied
    weights, which safetensors' save_model stores once)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for key, value in own.items():
        if isinstance(value, torch.Tensor) and value.numel():
            ident = (value.device, value.data_ptr(), tuple(value.shape), value.dtype)
            groups.setdefault(ident, []).append(key)
    tied = set()
    for keys in groups.values():
        if len(keys) > 1 and any(k in present for k in keys):
            tied.update(k for k in keys if k not in present)
    return tied


def _standalone_tensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies that share no memory, as safetensors requires; tied weights are
    written once per name and tied again by load_state_dict copying into the model."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(
                f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                "safetensors stores tensors only, so keep extra state out of the state_dict."
            )
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.nbytes:
            tensor = tensor.clone()
            storage = tensor.untyped_storage()
        seen.add(storage.data_ptr())
        out[key] = tensor
    return out


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = len(items) - _SHOWN
    return f"({len(items)}: {shown}{f', and {more} more' if more > 0 else ''})"


def _brief(exc: BaseException) -> str:
    """The first line of an exception's message, capped, for errors that embed it."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
