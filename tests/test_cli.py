"""The command line as a user drives it: a model file, weights, data files, clear errors."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from rampart.cli import app

runner = CliRunner()


@pytest.fixture()
def user_files(tmp_path, trained_net, digits):
    """What a user brings: a model definition file, its trained weights and an .npz dataset."""
    model_py = tmp_path / "my_model.py"
    model_py.write_text(textwrap.dedent("""
        from rampart.zoo import digits_cnn

        def build():
            return digits_cnn()
    """))
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in trained_net.state_dict().items()}, str(weights))
    state_dict = tmp_path / "weights.pt"
    torch.save(trained_net.state_dict(), state_dict)
    x, y = digits
    data = tmp_path / "test.npz"
    np.savez(data, x=x[1400:1500].numpy(), y=y[1400:1500].numpy())
    return {"model": f"{model_py}:build", "weights": str(weights), "pt": str(state_dict),
            "data": f"npz:{data}", "dir": tmp_path}


def _attack(*args: str):
    return runner.invoke(app, ["attack", *args])


def test_attack_json_on_user_model(user_files):
    res = _attack("--model", user_files["model"], "--weights", user_files["weights"],
                  "--data", user_files["data"], "--attack", "pgd", "--eps", "0.05,0.3",
                  "--steps", "10", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["samples"] == 100
    assert report["clean_accuracy"] > 0.85
    assert [r["eps"] for r in report["results"]] == [0.05, 0.3]
    assert report["robust_accuracy"] == report["results"][1]["robust_accuracy"] == 0.0
    assert report["results"][0]["robust_accuracy"] > 0.0
    assert report["attack_config"]["steps"] == 10
    assert report["threat"]["norm"] == "linf"


def test_attack_table_state_dict_limit_and_save_adv(user_files):
    out = user_files["dir"] / "adv.npz"
    res = _attack("--model", user_files["model"], "--weights", user_files["pt"],
                  "--data", user_files["data"], "--attack", "fgsm", "--norm", "l2",
                  "--eps", "1.0", "--limit", "40", "--save-adv", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    assert "robust" in res.stdout and "fgsm" in res.stdout
    saved = np.load(out)
    assert saved["x"].shape == (40, 1, 8, 8) and saved["y"].shape == (40,)
    delta = (saved["x"] - np.load(user_files["data"][4:])["x"][:40]).reshape(40, -1)
    assert np.all(np.linalg.norm(delta, axis=1) <= 1.0 + 1e-5)
    # the saved file is itself a dataset rampart can read back
    again = _attack("--model", user_files["model"], "--weights", user_files["weights"],
                    "--data", f"npz:{out}", "--attack", "fgsm", "--eps", "0", "--json")
    assert again.exit_code == 0, again.output
    acc_on_adv = json.loads(again.stdout)["clean_accuracy"]
    assert acc_on_adv < 1 - float(saved["success"].mean()) + 1e-6


def test_targeted_attack_from_the_cli(user_files):
    res = _attack("--model", user_files["model"], "--weights", user_files["weights"],
                  "--data", user_files["data"], "--eps", "0.5", "--targeted", "least-likely",
                  "--steps", "40", "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["results"][0]
    assert row["targeted"] == "least-likely" and row["attack_success_rate"] > 0.9


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"--norm": "l7"}, "unknown norm"),
        ({"--eps": "-0.1"}, "eps must be finite and >= 0"),
        ({"--eps": "big"}, "--eps must be numbers"),
        ({"--attack": "pgdd"}, "unknown attack"),
        ({"--weights": "nowhere.safetensors"}, "nowhere.safetensors"),
        ({"--model": "no_such_file.py:build"}, "no_such_file.py"),
        ({"--data": "npz:missing.npz"}, "missing.npz"),
        ({"--data": "imagenet:/x"}, "imagenet"),
        ({"--limit": "0"}, "limit"),
        ({"--steps": "0"}, "steps must be at least 1"),
        ({"--save-adv": "out.csv"}, ".npz"),
        ({"--device": "cuda:0"} if not torch.cuda.is_available() else {"--device": "tpu"},
         "device"),
    ],
)
def test_bad_input_exits_2_with_a_message(user_files, change, fragment):
    args = {"--model": user_files["model"], "--weights": user_files["weights"],
            "--data": user_files["data"], "--eps": "0.1", "--steps": "2"} | change
    res = _attack(*[item for pair in args.items() for item in pair])
    assert res.exit_code == 2, res.output
    assert fragment in res.output
    assert "Traceback" not in res.output


def test_weights_that_do_not_fit_the_model(user_files):
    wrong = user_files["dir"] / "wrong.safetensors"
    save_file({"0.weight": torch.zeros(3, 3)}, str(wrong))
    res = _attack("--model", user_files["model"], "--weights", str(wrong),
                  "--data", user_files["data"], "--eps", "0.1")
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "error:" in res.output


def test_model_and_data_that_do_not_fit(user_files, tmp_path):
    other = tmp_path / "rgb.npz"
    np.savez(other, x=np.random.rand(4, 3, 8, 8).astype(np.float32), y=np.zeros(4, dtype=int))
    res = _attack("--model", user_files["model"], "--weights", user_files["weights"],
                  "--data", f"npz:{other}", "--eps", "0.1")
    assert res.exit_code == 2 and "data matches the input" in res.output


def test_demo_writes_results(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "3",
                              "--harden-epochs", "2", "--suite", "quick", "--json"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["clean_accuracy"] > 0.7
    assert (tmp_path / "demo" / "digits_cnn.safetensors").is_file()
    pgd = [r for r in results["attacks"] if r["attack"] == "pgd" and r["norm"] == "linf"]
    assert [r["eps"] for r in pgd] == [0.05, 0.1, 0.2, 0.3]
    assert pgd[-1]["robust_accuracy"] < pgd[0]["robust_accuracy"] <= results["clean_accuracy"]
    audited = results["audit"]["robust_accuracy"]
    assert audited["linf@0.1"] <= audited["linf@0.05"] <= results["clean_accuracy"]
    # the audit is at least as strong as PGD at the same eps
    assert audited["linf@0.1"] <= pgd[1]["robust_accuracy"] + 1e-9
    before = (tmp_path / "demo" / "before" / "index.html").read_text()
    assert "rampart audit" in before and 'data-testid="section-diagnostics"' in before
    # harden, re-audit, and the final report shows before and after side by side
    hardening = results["hardening"]
    assert (tmp_path / "demo" / "digits_cnn_hardened.safetensors").is_file()
    assert (tmp_path / "demo" / "training" / "index.html").is_file()
    assert hardening["clean_accuracy"] > 0.7 and hardening["epochs"] == 2
    rows = {r["threat"]: r for r in results["comparison"]["robust_accuracy"]}
    assert rows["linf@0.1"]["before"] == audited["linf@0.1"]
    assert rows["linf@0.1"]["after"] == results["hardened_audit"]["robust_accuracy"]["linf@0.1"]
    page = (tmp_path / "demo" / "index.html").read_text()
    assert 'data-testid="section-comparison"' in page and "after hardening" in page
    # the tabular step: an attack that ignores the schema looks stronger than it is
    tabular = results["tabular"]
    assert tabular["robust_unconstrained"] <= tabular["robust_constrained"] <= 1.0
    assert tabular["invalid_share"] > 0.5 and Path(tabular["report"]).is_file()
    assert "tabular" in res.stdout.lower()


def test_console_script_runs_without_traceback(user_files):
    proc = subprocess.run(
        [sys.executable, "-m", "rampart", "attack", "--model", user_files["model"],
         "--eps", "0.1", "--weights", str(user_files["dir"] / "absent.safetensors")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "absent.safetensors" in proc.stderr and "Traceback" not in proc.stderr
    version = subprocess.run([sys.executable, "-m", "rampart", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "rampart" in version.stdout
