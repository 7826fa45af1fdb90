"""What ``rampart scan-data`` does, apart from argument parsing: load, scan, report, filter.

The model must be the one trained on the data scanned (its weights hold the backdoor). An
``npz:`` dataset that carries a ``poisoned`` array (as ``rampart.data.save_npz(...,
poisoned=mask)`` writes it) or a ``--truth`` file makes the report give precision and recall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rampart.data import load_data, save_npz
from rampart.devices import resolve_device
from rampart.errors import ConfigError, DataLoadError
from rampart.evaluate.environment import collect
from rampart.evaluate.fingerprint import data_fingerprint, weights_fingerprint
from rampart.poisoning.mitigation import filter_dataset
from rampart.poisoning.scan import DataScanReport, scan_data
from rampart.targets import load_target

TRUTH_KEYS = ("poisoned", "poisoned_mask")


@dataclass
class ScanRequest:
    """Everything ``rampart scan-data`` was asked for."""

    model: str
    data: str
    weights: Path | None = None
    scanners: list[str] | None = None
    reference: str | None = None
    truth: Path | None = None
    limit: int | None = None
    split: str = "train"
    batch_size: int = 256
    mean: list[float] | None = None
    std: list[float] | None = None
    device: str = "auto"
    seed: int = 0
    out_dir: Path = field(default_factory=lambda: Path("reports/scan-data"))
    write_filtered: Path | None = None


def run_scan_command(request: ScanRequest) -> DataScanReport:
    """Scan the data the request names and write the reports (and the filtered data)."""
    if request.write_filtered is not None and request.write_filtered.suffix != ".npz":
        raise ConfigError(f"--write-filtered writes an .npz file; got {request.write_filtered}. "
                          "Give a path ending in .npz.")
    device = resolve_device(request.device)
    net, model, dataset = load_target(
        request.model, request.weights, request.data, device=device, limit=request.limit,
        split=request.split, mean=request.mean, std=request.std, batch_size=request.batch_size)
    reference = None
    if request.reference is not None:
        ref = load_data(request.reference, split="test")
        if ref.x.shape[1:] != dataset.x.shape[1:]:
            raise ConfigError(
                f"the reference inputs have shape {tuple(ref.x.shape[1:])} but the data has "
                f"{tuple(dataset.x.shape[1:])}; STRIP needs clean inputs of the same kind."
            )
        reference = ref.x
    truth = _truth(request, len(dataset))
    report = scan_data(model, dataset.x, dataset.y, request.scanners, reference=reference,
                       truth=truth, seed=request.seed, batch_size=request.batch_size)
    report.model = {"name": _model_name(request.model), "source": request.model,
                    "weights": None if request.weights is None else str(request.weights),
                    "weights_fingerprint": weights_fingerprint(net),
                    "num_classes": model.num_classes}
    report.data = {"name": request.data, "split": request.split, "limit": request.limit,
                   "fingerprint": data_fingerprint(dataset.x, dataset.y),
                   "reference": request.reference}
    report.environment = collect(seed=request.seed, device=device)
    out = request.out_dir
    report.report_paths = {"html": str(out / "index.html"), "json": str(out / "report.json"),
                           "markdown": str(out / "summary.md")}
    if request.write_filtered is not None:
        x_keep, y_keep = filter_dataset(dataset.x, dataset.y, report.flagged)
        save_npz(request.write_filtered, x_keep, y_keep)
        report.report_paths["filtered"] = str(request.write_filtered)
    report.save_html(out / "index.html")
    report.save_markdown(out / "summary.md")
    report.save_json(out / "report.json")
    return report


def _model_name(source: str) -> str:
    return source.rsplit(":", 1)[-1] if ":" in source else Path(source).stem


def _truth(request: ScanRequest, n: int) -> np.ndarray | None:
    """The known poisoned mask: ``--truth`` (.npy, or .npz with a ``poisoned`` array), or a
    ``poisoned`` array inside an ``npz:`` dataset; cut to ``--limit`` like the data."""
    mask = None
    if request.truth is not None:
        mask = _read_mask(request.truth, required=True)
    elif request.data.lower().startswith("npz:"):
        mask = _read_mask(Path(request.data[4:].strip()), required=False)
    if mask is None:
        return None
    mask = mask.reshape(-1)
    if request.limit is not None:
        mask = mask[:request.limit]
    if mask.size != n:
        raise ConfigError(f"the poisoned mask has {mask.size} entries but the data has {n} "
                          "samples; give one entry per sample, in the data's order.")
    return mask


def _read_mask(path: Path, required: bool) -> np.ndarray | None:
    if not path.is_file():
        raise DataLoadError(f"no truth file at {path}; check the path.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataLoadError(f"could not read {path} as .npy/.npz ({exc}); save the mask with "
                            "np.save or np.savez(path, poisoned=mask).") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        key = next((k for k in TRUTH_KEYS if k in loaded.files), None)
        if key is None:
            if required:
                raise DataLoadError(f"{path} has arrays {sorted(loaded.files)} but no "
                                    f"{' or '.join(TRUTH_KEYS)}; save the mask as "
                                    "np.savez(path, poisoned=mask).")
            return None
        return loaded[key]
