"""Datasets named by a short spec string, loaded into float32 arrays in [0, 1].

Supported specs: ``digits`` (scikit-learn's bundled 8x8 digits), ``mnist:DIR`` (IDX files),
``cifar10:DIR`` (the CIFAR-10 python batches, unpickled with a strict allow-list),
``npz:FILE`` (arrays ``x`` and ``y``) and ``folder:DIR`` (one sub-folder of images per class).
Every problem is reported as a :class:`~rampart.errors.DataLoadError` (or ``ConfigError`` for a
bad option) whose message says what was wrong and what to do.
"""

from __future__ import annotations

import gzip
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from rampart.errors import ConfigError, DataLoadError

__all__ = ["Dataset", "SUPPORTED_SPECS", "load_data", "read_idx", "safe_unpickle", "save_npz"]

SUPPORTED_SPECS = ("digits", "mnist:DIR", "cifar10:DIR", "npz:FILE", "folder:DIR")
SPLITS = ("test", "train")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


@dataclass
class Dataset:
    """Inputs ``x`` (float32 in [0, 1]; (N, C, H, W) images or (N, D) rows) and labels ``y``."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them when ``n`` is larger than the dataset)."""
        if n < 0:
            raise ConfigError(f"cannot take {n} samples; ask for 0 or more.")
        return self._slice(slice(0, n))

    def split(self, n_first: int) -> tuple[Dataset, Dataset]:
        """Two datasets: the first ``n_first`` samples and the rest, e.g. train and held-out."""
        if not 0 <= n_first <= len(self):
            raise ConfigError(
                f"cannot split {len(self)} samples at {n_first}; pick a number from 0 to "
                f"{len(self)}."
            )
        return self._slice(slice(0, n_first)), self._slice(slice(n_first, None))

    def _slice(self, index: slice) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.num_classes, self.name, self.class_names)


def load_data(spec: str, limit: int | None = None, split: str = "test") -> Dataset:
    """Load the dataset named by ``spec`` (see ``SUPPORTED_SPECS``), keeping the first ``limit``.

    ``split`` picks ``test`` or ``train`` files for mnist and cifar10; the other sources have a
    single split and ignore it.
    """
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit must be a positive number of samples, got {limit}.")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    scheme, _, target = spec.partition(":")
    loader = _LOADERS.get(scheme.strip().lower())
    if loader is None:
        raise DataLoadError(_unknown_spec_message(spec))
    if scheme.strip().lower() != "digits" and not target.strip():
        raise DataLoadError(
            f"data spec {spec!r} names no path; write it as {scheme}:PATH, "
            f"e.g. {scheme}:data/{scheme}."
        )
    dataset = loader(target.strip(), split)
    return dataset if limit is None else dataset.take(limit)


def save_npz(path: str | Path, x: Any, y: Any, **extra: Any) -> Path:
    """Write ``x`` and ``y`` to a compressed ``.npz`` that ``npz:FILE`` can read back.

    ``extra`` arrays travel along, e.g. ``poisoned=mask``, which ``rampart scan-data`` reads
    as the known poisoned samples.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
              for k, v in {"x": x, "y": y, **extra}.items()}
    np.savez_compressed(path, **arrays)
    return path


def _unknown_spec_message(spec: str) -> str:
    hint = ""
    if spec.lower().endswith(".npz"):
        hint = f" For an .npz file write npz:{spec}."
    elif Path(spec).expanduser().is_dir():
        hint = f" For a folder of images write folder:{spec} (or mnist:/cifar10: for those files)."
    return (
        f"unknown data spec {spec!r}; use one of: {', '.join(SUPPORTED_SPECS)}.{hint}"
    )


# ---------------------------------------------------------------- shared checks


def _existing(target: str, kind: str, spec: str) -> Path:
    """The path ``target`` as a file or directory (``kind``), or a DataLoadError naming it."""
    path = Path(target).expanduser()
    if not path.exists():
        raise DataLoadError(f"no such {kind} {str(path)!r}; check the path in --data {spec}:...")
    if kind == "directory" and not path.is_dir():
        raise DataLoadError(f"{str(path)!r} is a file, but {spec}: needs a directory.")
    if kind == "file" and not path.is_file():
        raise DataLoadError(f"{str(path)!r} is a directory, but {spec}: needs a file.")
    return path


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """Labels as int64 class indices of length ``n``, or a DataLoadError saying what is off."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataLoadError(
            f"labels in {where} have shape {y.shape}; store one class index per sample "
            "(shape (N,)), e.g. y.argmax(1) for one-hot labels."
        )
    if y.shape[0] != n:
        raise DataLoadError(
            f"{where} has {n} inputs but {y.shape[0]} labels; both must hold the same samples."
        )
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise DataLoadError(
            f"labels in {where} have dtype {y.dtype}; store integer class indices."
        )
    if n and y.min() < 0:
        raise DataLoadError(
            f"labels in {where} include {int(y.min())}; class indices start at 0."
        )
    return y.astype(np.int64)


def _unit_float(x: np.ndarray, where: str) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 is divided by 255, floats must already be in range."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype.kind != "f":
        raise DataLoadError(
            f"inputs in {where} have dtype {x.dtype}; store uint8 (0..255) or floats in [0, 1]."
        )
    x = x.astype(np.float32)
    if x.size and not np.all(np.isfinite(x)):
        raise DataLoadError(f"inputs in {where} contain NaN or infinity; clean the data first.")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise DataLoadError(
            f"inputs in {where} range over [{x.min():g}, {x.max():g}], outside [0, 1]; "
            "rescale them to [0, 1] (e.g. divide 0..255 pixels by 255) before saving."
        )
    return x


def _num_classes(y: np.ndarray, at_least: int = 0) -> int:
    return max(at_least, int(y.max()) + 1 if y.size else 0)


# ---------------------------------------------------------------- digits


def _load_digits(_target: str, _split: str) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images[:, None] / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    names = [str(t) for t in bunch.target_names]
    return Dataset(x, y, num_classes=10, name="digits", class_names=names)


# ---------------------------------------------------------------- mnist (IDX)

# IDX type codes (third magic byte) and the big-endian numpy dtypes they stand for.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_PREFIX = {"test": "t10k", "train": "train"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into a numpy array, checking magic, dims and size."""
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataLoadError(
            f"{str(path)!r} is not an IDX file (magic bytes {raw[:4].hex() or 'missing'}); "
            "point mnist: at the original MNIST idx files."
        )
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataLoadError(f"{str(path)!r} has a truncated IDX header; download it again.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        problem = "is truncated" if actual < expected else "has trailing bytes"
        raise DataLoadError(
            f"{str(path)!r} {problem}: its header promises {dims} values ({expected} bytes) "
            f"but the file holds {actual}; download it again."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataLoadError(
            f"could not read {str(path)!r} ({exc}); the file may be damaged, download it again."
        ) from None
    return raw


def _load_mnist(target: str, split: str) -> Dataset:
    path = Path(target).expanduser()
    if path.is_file():
        images_path, labels_path = path, _labels_beside(path)
    else:
        folder = _existing(target, "directory", "mnist")
        prefix = _MNIST_PREFIX[split]
        images_path = _find_idx(folder, prefix, "images", 3)
        labels_path = _find_idx(folder, prefix, "labels", 1)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataLoadError(
            f"{str(images_path)!r} holds an array of shape {images.shape}; an MNIST images file "
            "has shape (N, H, W). Check that it is not the labels file."
        )
    where = f"{images_path.name} / {labels_path.name}"
    y = _labels(labels, images.shape[0], where)
    x = _unit_float(images, str(images_path))[:, None]
    return Dataset(x, y, num_classes=_num_classes(y, at_least=10), name="mnist")


def _idx_names(prefix: str, kind: str, rank: int) -> list[str]:
    stems = [f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"]
    return [name for stem in stems for name in (stem, stem + ".gz")]


def _find_idx(folder: Path, prefix: str, kind: str, rank: int) -> Path:
    names = _idx_names(prefix, kind, rank)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir())[:10]
    raise DataLoadError(
        f"no MNIST {kind} file in {str(folder)!r}: looked for {names[0]} or {names[2]} "
        f"(optionally .gz); found {present or 'nothing'}. Check the directory and --split."
    )


def _labels_beside(images_path: Path) -> Path:
    name = images_path.name
    if "images" not in name:
        raise DataLoadError(
            f"mnist:{images_path} is not an images file (its name has no 'images'); point "
            "mnist: at the directory or at the ...-images-idx3-ubyte file."
        )
    base = name.replace("images", "labels").replace("idx3", "idx1")
    base = base.removesuffix(".gz")
    for candidate in (base, base + ".gz"):
        if (images_path.parent / candidate).is_file():
            return images_path.parent / candidate
    raise DataLoadError(
        f"no labels file beside {str(images_path)!r}: looked for {base} (optionally .gz) in "
        "the same directory; put the labels there or point mnist: at the directory."
    )


# ---------------------------------------------------------------- cifar10 (pickled batches)

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = {"test": ["test_batch"], "train": [f"data_batch_{i}" for i in range(1, 6)]}


@cache
def _numpy_allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch may name: what numpy needs to rebuild arrays."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    # Old pickles (like the real batches) say numpy.core, numpy 2 writes numpy._core.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RefusedGlobal(pickle.UnpicklingError):
    """Raised inside the restricted unpickler when a pickle names a forbidden global."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array-rebuilding globals and refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        found = _numpy_allowed_globals().get((module, name))
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found


def safe_unpickle(path: Path) -> Any:
    """Unpickle ``path`` allowing plain containers and numpy arrays only, never code."""
    try:
        with path.open("rb") as handle:
            return _NumpyOnlyUnpickler(handle, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DataLoadError(
            f"refused to load {str(path)!r} as unsafe: the pickle asks for {exc}, which could "
            "run code. Use the original CIFAR-10 python batches, or convert the data to .npz."
        ) from None
    except Exception as exc:  # a damaged pickle can raise almost anything
        raise DataLoadError(
            f"could not read {str(path)!r} as a CIFAR-10 batch ({type(exc).__name__}: {exc}); "
            "download the python version of CIFAR-10 again."
        ) from None


def _cifar_folder(target: str) -> Path:
    folder = _existing(target, "directory", "cifar10")
    if (folder / _CIFAR_FOLDER).is_dir():
        folder = folder / _CIFAR_FOLDER
    return folder


def _load_cifar10(target: str, split: str) -> Dataset:
    folder = _cifar_folder(target)
    names = _CIFAR_FILES[split]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataLoadError(
            f"no CIFAR-10 {split} batch {missing[0]!r} in {str(folder)!r}; point cifar10: at the "
            f"extracted {_CIFAR_FOLDER} folder (or its parent) and check --split."
        )
    parts = [_cifar_batch(folder / name) for name in names]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    class_names = _cifar_class_names(folder / "batches.meta")
    at_least = len(class_names) if class_names else 10
    return Dataset(
        _unit_float(x, str(folder)), y, num_classes=_num_classes(y, at_least=at_least),
        name="cifar10", class_names=class_names,
    )


def _text_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataLoadError(
            f"{str(path)!r} holds a {type(obj).__name__}, not the dict of a CIFAR-10 batch."
        )
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _text_keys(safe_unpickle(path), path)
    if "data" not in batch or "labels" not in batch:
        raise DataLoadError(
            f"{str(path)!r} has keys {sorted(batch)}, but a CIFAR-10 batch needs 'data' and "
            "'labels'; check that this is the python version of CIFAR-10."
        )
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.size % (3 * 32 * 32) or data.ndim not in (2, 4):
        raise DataLoadError(
            f"'data' in {str(path)!r} is {data.dtype} with shape {data.shape}; a CIFAR-10 batch "
            "holds uint8 rows of 3072 pixels. Download the python version again."
        )
    x = data.reshape(-1, 3, 32, 32)
    return x, _labels(np.asarray(batch["labels"]), x.shape[0], str(path))


def _cifar_class_names(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    meta = _text_keys(safe_unpickle(path), path)
    names = meta.get("label_names")
    if not isinstance(names, list):
        return None
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


# ---------------------------------------------------------------- npz

_NPZ_KEY_PAIRS = (("x", "y"), ("images", "labels"), ("X", "Y"))


def _load_npz(target: str, _split: str) -> Dataset:
    path = _existing(target, "file", "npz")
    arrays = _read_npz(path)
    pair = next((p for p in _NPZ_KEY_PAIRS if p[0] in arrays and p[1] in arrays), None)
    if pair is None:
        wanted = " or ".join(f"{a}/{b}" for a, b in _NPZ_KEY_PAIRS)
        raise DataLoadError(
            f"{str(path)!r} has arrays {sorted(arrays) or 'none'}, but npz: needs inputs and "
            f"labels named {wanted}; save them with np.savez(path, x=..., y=...)."
        )
    x = _layout(arrays[pair[0]], path)
    y = _labels(arrays[pair[1]], x.shape[0], str(path))
    if x.shape[0] == 0:
        raise DataLoadError(f"{str(path)!r} holds no samples; save at least one.")
    return Dataset(_unit_float(x, str(path)), y, _num_classes(y), name=f"npz:{target}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataLoadError(
                f"{str(path)!r} is a single .npy array; npz: needs an .npz with x and y, "
                "written by np.savez(path, x=..., y=...)."
            )
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except DataLoadError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataLoadError(
                f"{str(path)!r} contains object arrays, which need pickle; rampart refuses to "
                "unpickle data. Save plain numeric arrays instead."
            ) from None
        raise _npz_unreadable(path, exc) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _npz_unreadable(path, exc) from None


def _npz_unreadable(path: Path, exc: Exception) -> DataLoadError:
    return DataLoadError(
        f"could not read {str(path)!r} as .npz ({exc}); write it with np.savez or "
        "np.savez_compressed."
    )


def _layout(x: np.ndarray, path: Path) -> np.ndarray:
    """Inputs as (N, C, H, W) or (N, D): channels-last images are moved to channels-first."""
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 3:
        return x[:, None]
    if x.ndim in (2, 4):
        return x
    raise DataLoadError(
        f"inputs in {str(path)!r} have shape {x.shape}; use (N, D) rows, (N, H, W) grayscale "
        "or (N, C, H, W) / (N, H, W, C) images."
    )


# ---------------------------------------------------------------- folder of images

_GRAYSCALE_MODES = frozenset({"1", "L", "LA"})


def _load_folder(target: str, _split: str) -> Dataset:
    root = _existing(target, "directory", "folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataLoadError(
            f"{str(root)!r} has no sub-folders; folder: needs one sub-folder of images per "
            "class, e.g. DIR/cat/1.png and DIR/dog/2.png."
        )
    files: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(classes):
        images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataLoadError(
                f"class folder {str(class_dir)!r} holds no images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); add some or remove the folder."
            )
        files += images
        labels += [index] * len(images)
    x = _read_images(files)
    y = np.asarray(labels, dtype=np.int64)
    names = [p.name for p in classes]
    return Dataset(x, y, len(names), name=f"folder:{target}", class_names=names)


def _read_images(files: list[Path]) -> np.ndarray:
    """All images as one float32 (N, C, H, W) array: L when all are grayscale, else RGB."""
    headers = {file: _image_header(file) for file in files}
    first = files[0]
    for file in files:
        if headers[file][0] != headers[first][0]:
            (w1, h1), (w2, h2) = headers[first][0], headers[file][0]
            raise DataLoadError(
                f"images differ in size: {str(first)!r} is {w1}x{h1} but {str(file)!r} is "
                f"{w2}x{h2}; resize them all to one size first."
            )
    gray = all(mode in _GRAYSCALE_MODES for _, mode in headers.values())
    stacked = np.stack([_image_pixels(file, "L" if gray else "RGB") for file in files])
    stacked = stacked[:, None] if gray else stacked.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(stacked).astype(np.float32) / np.float32(255.0)


def _image_header(file: Path) -> tuple[tuple[int, int], str]:
    """Size and mode of an image, read from its header only."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            return image.size, image.mode
    except Exception as exc:  # Pillow raises several types for unreadable files
        raise _unreadable_image(file, exc) from None


def _image_pixels(file: Path, mode: str) -> np.ndarray:
    """The pixels of an image converted to ``mode`` (first frame of an animation)."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except Exception as exc:
        raise _unreadable_image(file, exc) from None


def _unreadable_image(file: Path, exc: Exception) -> DataLoadError:
    return DataLoadError(
        f"could not read image {str(file)!r} ({type(exc).__name__}: {exc}); "
        "remove or replace the file."
    )


_LOADERS: dict[str, Callable[[str, str], Dataset]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
    "npz": _load_npz,
    "folder": _load_folder,
}

