"""rampart.loading: model specs, TorchScript, weights in every accepted container, and errors."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

from rampart.errors import ModelLoadError
from rampart.loading import load_model, load_weights, save_weights

MODEL_FILE = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, width: int = 8):
            super().__init__()
            self.conv1 = nn.Conv2d(1, width, 3)
            self.fc = nn.Linear(width * 6 * 6, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.conv1(x)).flatten(1))


    def build():
        torch.manual_seed(0)
        return Net()


    def build_wide():
        return Net(width=16)


    def not_a_model():
        return 42


    def needs_args(width):
        return Net(width)
"""


def write_model_file(folder: Path, text: str = MODEL_FILE, name: str = "net.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    return write_model_file(tmp_path / "models")


def tiny() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


class RunsShell:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------- model specs


def test_factory_from_a_python_file(model_file: Path) -> None:
    net = load_model(f"{model_file}:build")
    assert type(net).__name__ == "Net" and not net.training
    assert net.conv1.weight.shape == (8, 1, 3, 3)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_a_class_can_be_the_factory(model_file: Path) -> None:
    assert type(load_model(f"{model_file}:Net")).__name__ == "Net"


def test_same_file_name_in_two_folders_does_not_collide(tmp_path: Path) -> None:
    first = write_model_file(tmp_path / "a")
    second = write_model_file(tmp_path / "b", "from torch import nn\nbuild = nn.Tanh\n")
    assert type(load_model(f"{first}:build")).__name__ == "Net"
    assert isinstance(load_model(f"{second}:build"), nn.Tanh)
    assert type(load_model(f"{first}:build")).__name__ == "Net"


def test_file_can_import_its_neighbours(tmp_path: Path) -> None:
    write_model_file(tmp_path, "from torch import nn\nBlock = nn.ReLU\n", name="blocks_x1.py")
    path = write_model_file(tmp_path, "from blocks_x1 import Block\ndef build():\n"
                                      "    return Block()\n", name="main.py")
    assert isinstance(load_model(f"{path}:build"), nn.ReLU)


def test_factory_returning_something_else(model_file: Path) -> None:
    with pytest.raises(ModelLoadError, match="returned int 42"):
        load_model(f"{model_file}:not_a_model")


def test_missing_factory_lists_what_the_file_defines(model_file: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{model_file}:make")
    message = str(info.value)
    assert "'make'" in message
    for name in ("Net", "build", "build_wide", "not_a_model"):
        assert name in message
    assert "manual_seed" not in message  # only what the file itself defines


def test_factory_that_needs_arguments(model_file: Path) -> None:
    with pytest.raises(ModelLoadError, match="width"):
        load_model(f"{model_file}:needs_args")


def test_file_that_raises_on_import(tmp_path: Path) -> None:
    path = write_model_file(tmp_path, "raise RuntimeError('cuda driver too old')\n")
    with pytest.raises(ModelLoadError, match="cuda driver too old"):
        load_model(f"{path}:build")


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="missing_net.py"):
        load_model(f"{tmp_path / 'missing_net.py'}:build")


def test_python_file_without_factory_says_how_to_name_one(model_file: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(str(model_file))
    assert f"{model_file}:build" in str(info.value) and "build_wide" in str(info.value)


def test_factory_from_an_importable_module(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "userpkg_rampart_test"
    write_model_file(package, "", name="__init__.py")
    write_model_file(package, MODEL_FILE, name="nets.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = load_model("userpkg_rampart_test.nets:build_wide")
    assert net.conv1.weight.shape == (16, 1, 3, 3) and not net.training
    assert isinstance(load_model("torch.nn:Identity"), nn.Identity)


def test_missing_module(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no_such_pkg_xyz"):
        load_model("no_such_pkg_xyz.models:build")


def test_module_that_raises_on_import(tmp_path: Path, monkeypatch) -> None:
    write_model_file(tmp_path, "import not_installed_dep_xyz\n", name="brokenmod_xyz.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not_installed_dep_xyz"):
        load_model("brokenmod_xyz:build")


def test_missing_attribute_in_module() -> None:
    with pytest.raises(ModelLoadError, match="NoSuchLayer"):
        load_model("torch.nn:NoSuchLayer")


@pytest.mark.parametrize("spec", ["resnet18", "torchvision.models"])
def test_spec_without_factory_suggests_one(spec: str) -> None:
    with pytest.raises(ModelLoadError, match=f"--model {spec}:build"):
        load_model(spec)


# ---------------------------------------------------------------- TorchScript


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("suffix", "how"), [(".pt", "script"), (".ts", "trace")])
def test_torchscript_file(tmp_path: Path, suffix: str, how: str) -> None:
    net = tiny().eval()
    x = torch.randn(5, 4)
    compiled = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
    path = tmp_path / f"net{suffix}"
    compiled.save(str(path))
    loaded = load_model(str(path), device="cpu")
    assert not loaded.training
    torch.testing.assert_close(loaded(x), net(x))


def test_state_dict_given_as_model_explains_weights(tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.save(tiny().state_dict(), path)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(path))
    assert "TorchScript" in str(info.value) and "--weights" in str(info.value)


def test_missing_torchscript_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="gone.pt"):
        load_model(str(tmp_path / "gone.pt"))


# ---------------------------------------------------------------- weights


def test_safetensors_round_trip_through_load_model(model_file: Path, tmp_path: Path) -> None:
    source = load_model(f"{model_file}:build")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.5)
    save_weights(source, tmp_path / "out" / "w.safetensors")
    loaded = load_model(f"{model_file}:build", tmp_path / "out" / "w.safetensors", device="cpu")
    assert_same_weights(loaded, source)
    assert not loaded.training and loaded.conv1.weight.device.type == "cpu"


def test_torch_save_state_dict(tmp_path: Path) -> None:
    source = tiny()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    target = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert load_weights(target, tmp_path / "w.pth") is target
    assert_same_weights(target, source)


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_checkpoint_containers_are_unwrapped(tmp_path: Path, key: str) -> None:
    source = tiny()
    checkpoint = {key: source.state_dict(), "epoch": 7, "optimizer": {"lr": 0.1}}
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    target = load_weights(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)),
                          tmp_path / "ckpt.pt")
    assert_same_weights(target, source)


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    source = tiny()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "dp.safetensors"))
    target = load_weights(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)),
                          tmp_path / "dp.safetensors")
    assert_same_weights(target, source)


def test_prefix_kept_when_the_model_uses_it(tmp_path: Path) -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)

    source = Wrapper()
    save_weights(source, tmp_path / "w.safetensors")
    target = load_weights(Wrapper(), tmp_path / "w.safetensors")
    assert_same_weights(target, source)


def test_mismatch_lists_missing_unexpected_and_shapes(model_file: Path, tmp_path: Path) -> None:
    wide = load_model(f"{model_file}:build_wide")
    state = wide.state_dict()
    state["extra.bias"] = torch.zeros(3)
    del state["fc.bias"]
    save_file(state, str(tmp_path / "wide.safetensors"))
    with pytest.raises(ModelLoadError) as info:
        load_model(f"{model_file}:build", tmp_path / "wide.safetensors")
    message = str(info.value)
    assert "conv1.weight: file has (16, 1, 3, 3), model expects (8, 1, 3, 3)" in message
    assert "missing keys (1: fc.bias)" in message
    assert "unexpected keys (1: extra.bias)" in message
    assert "check that --model builds the same architecture" in message


def test_long_key_lists_are_cut_short(tmp_path: Path) -> None:
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(6)])
    save_weights(big, tmp_path / "big.safetensors")
    with pytest.raises(ModelLoadError) as info:
        load_weights(nn.Linear(2, 2), tmp_path / "big.safetensors")
    message = str(info.value)
    assert "unexpected keys (12: 0.bias, 0.weight" in message and "and 7 more" in message


def test_missing_weights_file_names_the_path(model_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="nope.safetensors"):
        load_model(f"{model_file}:build", tmp_path / "nope.safetensors")


def test_pickled_code_in_weights_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(2), "payload": RunsShell(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError) as info:
        load_weights(tiny(), tmp_path / "evil.pt")
    assert "refuses to unpickle" in str(info.value) and "safetensors" in str(info.value)
    assert "system" in str(info.value)  # names what the file asked for
    assert not marker.exists()


def test_whole_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(tiny(), tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match="Sequential"):
        load_weights(tiny(), tmp_path / "whole.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_given_as_weights_points_to_model(tmp_path: Path) -> None:
    torch.jit.script(tiny()).save(str(tmp_path / "ts.pt"))
    with pytest.raises(ModelLoadError, match="--model"):
        load_weights(tiny(), tmp_path / "ts.pt")


@pytest.mark.parametrize("name", ["junk.pt", "junk.safetensors"])
def test_unreadable_weights(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"definitely not weights " * 4)
    with pytest.raises(ModelLoadError, match=name):
        load_weights(tiny(), tmp_path / name)


def test_checkpoint_without_state_dict_lists_its_keys(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelLoadError) as info:
        load_weights(tiny(), tmp_path / "ckpt.pt")
    assert "epoch" in str(info.value) and "optimizer" in str(info.value)


def test_safetensors_with_another_suffix_is_recognised(tmp_path: Path) -> None:
    source = tiny()
    save_weights(source, tmp_path / "w.bin")
    assert_same_weights(load_weights(tiny_other_seed(), tmp_path / "w.bin"), source)


def tiny_other_seed() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


# ---------------------------------------------------------------- tied weights


class TiedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 5, bias=False)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, x):
        return self.out(x) + self.embed(x)


def test_save_weights_handles_tied_tensors(tmp_path: Path) -> None:
    source = TiedNet()
    save_weights(source, tmp_path / "tied.safetensors")
    target = load_weights(TiedNet(), tmp_path / "tied.safetensors")
    assert_same_weights(target, source)
    assert target.out.weight is target.embed.weight


def test_file_with_tied_duplicate_dropped_loads(tmp_path: Path) -> None:
    source = TiedNet()
    save_model(source, str(tmp_path / "tied.safetensors"))  # stores the shared tensor once
    target = load_weights(TiedNet(), tmp_path / "tied.safetensors")
    assert_same_weights(target, source)


def test_save_weights_writes_contiguous_copies_of_views(tmp_path: Path) -> None:
    net = nn.Linear(4, 4)
    with torch.no_grad():
        net.weight = nn.Parameter(torch.arange(32.0).reshape(4, 8)[:, ::2])
    save_weights(net, tmp_path / "view.safetensors")
    target = load_weights(nn.Linear(4, 4), tmp_path / "view.safetensors")
    assert_same_weights(target, net)
