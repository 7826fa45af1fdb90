"""rampart.data: every spec form on small files the tests write, and each error path."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rampart.data import Dataset, load_data, read_idx, safe_unpickle, save_npz
from rampart.errors import ConfigError, DataLoadError

# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file for ``array`` (uint8 or big-endian int32), written from the format's spec."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def mnist_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make the full range certain
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_mnist(folder: Path, prefix: str, n: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist_arrays(n, seed=len(prefix))
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
    return images, labels


def cifar_batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {b"batch_label": b"testing", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": data, b"filenames": [b"f%d.png" % i for i in range(n)]}


def write_pickle(path: Path, obj: object, old_numpy_names: bool = False) -> Path:
    """Pickle ``obj``; with ``old_numpy_names`` the globals read numpy.core, as in the real
    batches (protocol 3 writes globals as plain text lines, so renaming them is safe)."""
    raw = pickle.dumps(obj, protocol=3 if old_numpy_names else pickle.DEFAULT_PROTOCOL)
    if old_numpy_names:
        raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"numpy.core.multiarray" in raw
    path.write_bytes(raw)
    return path


CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def write_cifar(root: Path, test_n: int = 6, old_numpy_names: bool = False) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    write_pickle(folder / "test_batch", cifar_batch(test_n, seed=99), old_numpy_names)
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", cifar_batch(3, seed=i), old_numpy_names)
    meta = {b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072}
    write_pickle(folder / "batches.meta", meta)
    return folder


class RunsShell:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


# ---------------------------------------------------------------- digits, limit, spec parsing


def test_digits_is_the_scaled_sklearn_set() -> None:
    data = load_data("digits")
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == np.float32
    assert data.y.shape == (1797,) and data.y.dtype == np.int64
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.num_classes == 10 and data.name == "digits" and len(data) == 1797
    assert data.y[:5].tolist() == [0, 1, 2, 3, 4]
    assert set(np.unique(data.x * 16).round(4)) <= set(np.arange(17.0))


def test_limit_keeps_the_first_samples() -> None:
    full = load_data("digits")
    data = load_data("digits", limit=25)
    assert len(data) == 25 and data.x.shape == (25, 1, 8, 8)
    np.testing.assert_array_equal(data.x, full.x[:25])
    np.testing.assert_array_equal(data.y, full.y[:25])
    assert len(load_data("digits", limit=10_000)) == 1797


@pytest.mark.parametrize("limit", [0, -3])
def test_non_positive_limit_is_a_config_error(limit: int) -> None:
    with pytest.raises(ConfigError, match="limit"):
        load_data("digits", limit=limit)


def test_unknown_split_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="validation"):
        load_data("digits", split="validation")


def test_unknown_scheme_lists_the_supported_specs() -> None:
    with pytest.raises(DataLoadError) as info:
        load_data("imagenet:/data")
    for form in ("digits", "mnist:DIR", "cifar10:DIR", "npz:FILE", "folder:DIR"):
        assert form in str(info.value)


def test_bare_npz_path_suggests_the_npz_scheme() -> None:
    with pytest.raises(DataLoadError, match="npz:adv.npz"):
        load_data("adv.npz")


def test_scheme_without_path_says_how_to_write_it() -> None:
    with pytest.raises(DataLoadError, match="mnist:PATH"):
        load_data("mnist:")


def test_dataset_take_and_split() -> None:
    data = Dataset(np.arange(10, dtype=np.float32).reshape(5, 2) / 10, np.arange(5), 5, "t")
    assert data.take(2).y.tolist() == [0, 1] and data.take(2).name == "t"
    first, rest = data.split(3)
    assert first.y.tolist() == [0, 1, 2] and rest.y.tolist() == [3, 4]
    assert rest.x.shape == (2, 2) and rest.num_classes == 5
    with pytest.raises(ConfigError, match="split"):
        data.split(6)
    with pytest.raises(ConfigError):
        data.take(-1)


# ---------------------------------------------------------------- mnist


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_test_and_train_splits(tmp_path: Path, gz: bool) -> None:
    images, labels = write_mnist(tmp_path, "t10k", 12, gz)
    train_images, train_labels = write_mnist(tmp_path, "train", 7, gz)

    data = load_data(f"mnist:{tmp_path}")
    assert data.x.shape == (12, 1, 28, 28) and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    np.testing.assert_allclose(data.x[:, 0] * 255, images, atol=1e-4)
    assert data.y.dtype == np.int64 and data.y.tolist() == labels.tolist()
    assert data.num_classes == 10 and data.name == "mnist"

    train = load_data(f"mnist:{tmp_path}", split="train")
    assert train.x.shape == (7, 1, 28, 28)
    np.testing.assert_allclose(train.x[:, 0] * 255, train_images, atol=1e-4)
    assert train.y.tolist() == train_labels.tolist()


def test_mnist_file_spec_finds_labels_beside_it(tmp_path: Path) -> None:
    images, labels = write_mnist(tmp_path, "t10k", 5, gz=True)
    data = load_data(f"mnist:{tmp_path / 't10k-images-idx3-ubyte.gz'}", limit=3)
    assert data.x.shape == (3, 1, 28, 28) and data.y.tolist() == labels[:3].tolist()


def test_mnist_file_spec_without_labels(tmp_path: Path) -> None:
    images, _ = mnist_arrays(3)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    with pytest.raises(DataLoadError, match="t10k-labels-idx1-ubyte"):
        load_data(f"mnist:{path}")


def test_read_idx_parses_dtype_and_dims(tmp_path: Path) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(">i4")
    out = read_idx(write_idx(tmp_path / "a.idx", array, gz=True))
    assert out.shape == (2, 3, 4) and out.dtype == np.int32
    assert out.tolist() == array.tolist()


def test_mnist_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataLoadError, match="nowhere"):
        load_data(f"mnist:{tmp_path / 'nowhere'}")


def test_mnist_missing_split_files_lists_what_is_there(tmp_path: Path) -> None:
    write_mnist(tmp_path, "t10k", 3, gz=True)
    with pytest.raises(DataLoadError) as info:
        load_data(f"mnist:{tmp_path}", split="train")
    assert "train-images-idx3-ubyte" in str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_mnist_bad_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, "t10k", 3, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x89PNG not an idx file at all")
    with pytest.raises(DataLoadError, match="not an IDX file"):
        load_data(f"mnist:{tmp_path}")


def test_mnist_truncated_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, "t10k", 3, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataLoadError, match="truncated"):
        load_data(f"mnist:{tmp_path}")


def test_mnist_damaged_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path, "t10k", 3, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(DataLoadError, match="t10k-labels-idx1-ubyte.gz"):
        load_data(f"mnist:{tmp_path}")


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    images, labels = mnist_arrays(4)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:3])
    with pytest.raises(DataLoadError, match="4 inputs but 3 labels"):
        load_data(f"mnist:{tmp_path}")


# ---------------------------------------------------------------- cifar10


@pytest.mark.parametrize("old_numpy_names", [False, True])
def test_cifar10_test_batch(tmp_path: Path, old_numpy_names: bool) -> None:
    folder = write_cifar(tmp_path, test_n=6, old_numpy_names=old_numpy_names)
    expected = cifar_batch(6, seed=99)
    for spec in (f"cifar10:{tmp_path}", f"cifar10:{folder}"):
        data = load_data(spec)
        assert data.x.shape == (6, 3, 32, 32) and data.x.dtype == np.float32
        assert data.x.min() >= 0.0 and data.x.max() <= 1.0
        pixels = expected[b"data"].reshape(6, 3, 32, 32)  # type: ignore[union-attr]
        np.testing.assert_allclose(data.x * 255, pixels, atol=1e-4)
        assert data.y.dtype == np.int64 and data.y.tolist() == expected[b"labels"]
        assert data.class_names == CLASS_NAMES and data.num_classes == 10
        assert data.name == "cifar10"


def test_cifar10_train_split_joins_five_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    data = load_data(f"cifar10:{tmp_path}", split="train")
    assert data.x.shape == (15, 3, 32, 32)
    expected = sum((cifar_batch(3, seed=i)[b"labels"] for i in range(1, 6)), [])
    assert data.y.tolist() == expected


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = cifar_batch(2, seed=1) | {b"extra": RunsShell(marker)}
    write_pickle(folder / "test_batch", batch)
    with pytest.raises(DataLoadError) as info:
        load_data(f"cifar10:{tmp_path}")
    assert "unsafe" in str(info.value) and "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    (eval, ("1 + 1",)),
    (getattr, ("abc", "upper")),
    (np.load, ("x.npy",)),
])
def test_safe_unpickle_refuses_any_other_global(tmp_path: Path, payload: tuple) -> None:
    class Reduces:
        def __reduce__(self):
            return payload

    path = write_pickle(tmp_path / "p.pkl", {b"data": Reduces()})
    with pytest.raises(DataLoadError, match="unsafe"):
        safe_unpickle(path)


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataLoadError, match="test_batch"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_wrong_keys_are_listed(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    write_pickle(folder / "test_batch", {b"pixels": np.zeros((1, 3072), np.uint8)})
    with pytest.raises(DataLoadError, match="pixels"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_damaged_pickle(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataLoadError, match="could not read"):
        load_data(f"cifar10:{tmp_path}")


# ---------------------------------------------------------------- npz


def test_npz_uint8_images_are_scaled_and_moved_to_channels_first(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    y = np.array([0, 2, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert data.x.shape == (4, 3, 5, 6) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x * 255, x.transpose(0, 3, 1, 2), atol=1e-4)
    assert data.y.tolist() == [0, 2, 1, 2] and data.num_classes == 3
    assert data.name == f"npz:{tmp_path / 'd.npz'}"


@pytest.mark.parametrize(("keys", "shape", "expected"), [
    (("images", "labels"), (3, 7, 7), (3, 1, 7, 7)),
    (("X", "Y"), (3, 10), (3, 10)),
    (("x", "y"), (3, 1, 4, 4), (3, 1, 4, 4)),
    (("x", "y"), (3, 3, 4, 3), (3, 3, 4, 3)),  # dim 1 is already channels: left alone
])
def test_npz_keys_and_layouts(tmp_path: Path, keys: tuple[str, str], shape: tuple,
                              expected: tuple) -> None:
    x = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float64).reshape(shape)
    np.savez(tmp_path / "d.npz", **{keys[0]: x, keys[1]: np.array([1, 0, 1])})
    data = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert data.x.shape == expected and data.x.dtype == np.float32
    assert data.x.max() == 1.0 and data.y.tolist() == [1, 0, 1]


def test_npz_floats_outside_unit_range_suggest_rescaling(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.full((2, 4), 200.0), y=np.array([0, 1]))
    with pytest.raises(DataLoadError, match="rescale"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_npz_missing_keys_lists_what_was_found(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", inputs=np.zeros((2, 4)), targets=np.array([0, 1]))
    with pytest.raises(DataLoadError) as info:
        load_data(f"npz:{tmp_path / 'd.npz'}")
    assert "inputs" in str(info.value) and "targets" in str(info.value)


def test_npz_object_arrays_are_refused(tmp_path: Path) -> None:
    x = np.empty(2, dtype=object)
    x[:] = [np.zeros(3), np.zeros(4)]
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(DataLoadError, match="pickle"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_npz_label_count_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4), np.float32), y=np.array([0, 1]))
    with pytest.raises(DataLoadError, match="3 inputs but 2 labels"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_npz_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataLoadError, match="gone.npz"):
        load_data(f"npz:{tmp_path / 'gone.npz'}")


def test_npz_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"hello, not numpy")
    with pytest.raises(DataLoadError, match="d.npz"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_npy_file_is_not_an_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(DataLoadError, match="single .npy"):
        load_data(f"npz:{tmp_path / 'x.npy'}")


def test_save_npz_round_trips(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((5, 1, 8, 8), dtype=np.float32)
    y = np.array([3, 1, 4, 1, 5])
    path = save_npz(tmp_path / "sub" / "adv.npz", x, y)
    data = load_data(f"npz:{path}")
    np.testing.assert_array_equal(data.x, x)
    assert data.y.tolist() == y.tolist() and data.num_classes == 6


# ---------------------------------------------------------------- folder of images


def test_folder_of_grayscale_images(tmp_path: Path) -> None:
    for name, value in (("zero", 0), ("one", 255)):
        (tmp_path / name).mkdir()
        for i in range(2):
            write_png(tmp_path / name / f"{i}.png", np.full((5, 4), value, np.uint8))
    (tmp_path / "one" / "notes.txt").write_text("ignored")
    data = load_data(f"folder:{tmp_path}")
    assert data.class_names == ["one", "zero"] and data.num_classes == 2
    assert data.x.shape == (4, 1, 5, 4) and data.x.dtype == np.float32
    assert data.y.tolist() == [0, 0, 1, 1]
    assert np.all(data.x[:2] == 1.0) and np.all(data.x[2:] == 0.0)


def test_folder_mixed_modes_become_rgb(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    red = np.zeros((3, 3, 3), np.uint8)
    red[..., 0] = 255
    write_png(tmp_path / "a" / "red.PNG", red)
    Image.fromarray(np.full((3, 3), 128, np.uint8)).save(tmp_path / "b" / "gray.JPG")
    data = load_data(f"folder:{tmp_path}")
    assert data.x.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(data.x[0, :, 1, 1], [1.0, 0.0, 0.0])
    assert np.allclose(data.x[1], 128 / 255, atol=3 / 255)  # jpeg is lossy
    assert data.y.tolist() == [0, 1]


def test_folder_size_mismatch_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write_png(tmp_path / "a" / "small.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "a" / "wide.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(DataLoadError) as info:
        load_data(f"folder:{tmp_path}")
    message = str(info.value)
    assert "small.png" in message and "wide.png" in message
    assert "4x4" in message and "6x4" in message


def test_folder_with_an_empty_class(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "empty").mkdir()
    write_png(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataLoadError, match="empty"):
        load_data(f"folder:{tmp_path}")


def test_folder_without_class_folders(tmp_path: Path) -> None:
    write_png(tmp_path / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataLoadError, match="sub-folder"):
        load_data(f"folder:{tmp_path}")


def test_folder_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataLoadError, match="broken.png"):
        load_data(f"folder:{tmp_path}")


def test_folder_spec_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    with pytest.raises(DataLoadError, match="directory"):
        load_data(f"folder:{path}")
