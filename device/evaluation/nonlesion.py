"""What the device shows on photos of no lesion, and how many real lesions it refuses.

``skinscan bench nonlesion`` runs every image of a non-lesion set (written by
``python -m training.nonlesion_set``) and the HAM10000 lesions of one split through
the device's own path: the quality gate (Retake), then the analyzer's decision
(Refer / Uncertain / Monitor). It reports, per category, how many got each screen,
and the share of real lesions sent to Retake with its 95% bootstrap interval.

The target (issue 28): no non-lesion photo is shown as Monitor, and at most 2% of
HAM10000 test lesions are refused.

HAM10000: Tschandl, Rosendahl & Kittler, Scientific Data 5, 180161 (2018), CC BY-NC 4.0.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import DatasetError, ImageError, SkinScanError

log = logging.getLogger(__name__)

OUTCOMES = ("retake", "uncertain", "monitor", "refer")
MAX_REFUSED = 0.02


@dataclass
class Outcome:
    """What the device showed for one image, and the measures behind it."""

    screen: str
    reasons: tuple[str, ...] = ()
    quality: dict[str, float] = field(default_factory=dict)
    label: str = ""
    confidence: float = float("nan")
    p_malignant: float = float("nan")
    unfamiliar_score: float = float("nan")


def device_outcome(
    frame: np.ndarray, analyzer: Any, thresholds: Any, always_analyse: bool = False
) -> Outcome:
    """The screen the device shows for ``frame``: the gate's Retake, else the decision's tier.

    Args:
        frame: RGB uint8 photo as captured.
        analyzer: a :class:`device.runtime.analyzer.Analyzer`.
        thresholds: the gate's :class:`device.imaging.quality.QualityThresholds`.
        always_analyse: also run the model on refused frames (for calibration).
    """
    from device.imaging.quality import assess_quality

    try:
        report = assess_quality(frame, thresholds)
    except ImageError as exc:
        return Outcome("retake", (str(exc),))
    outcome = Outcome("retake" if report.reasons else "", tuple(report.reasons), report.metrics())
    if report.reasons and not always_analyse:
        return outcome
    analysis = analyzer.analyze(frame, explain=False)
    decision = analysis.decision
    outcome.label = decision.label
    outcome.confidence = float(decision.confidence)
    outcome.p_malignant = float(decision.p_malignant)
    familiarity = analyzer.bundle.familiarity
    if familiarity is not None:
        outcome.unfamiliar_score = familiarity.score(analysis.feature_map)
    if not report.reasons:
        outcome.screen = decision.risk_tier
    return outcome


def read_index(set_dir: Path, portion: str | None) -> list[dict[str, str]]:
    """Rows of the set's index.csv (image_id, category, portion, source, file)."""
    path = set_dir / "index.csv"
    if not path.is_file():
        raise DatasetError(
            f"{path}: not found; write the set with python -m training.nonlesion_set"
        )
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if portion in (None, "all", r["portion"])]


def read_split(split_csv: Path, split: str) -> list[dict[str, str]]:
    """Rows of a split CSV (image_id, dx, split, ...) in ``split``."""
    if not split_csv.is_file():
        raise DatasetError(f"{split_csv}: no split CSV")
    with split_csv.open(newline="") as handle:
        return [r for r in csv.DictReader(handle) if r.get("split") == split]


def refused_share(refused: np.ndarray, labels: np.ndarray, n_boot: int = 1000, seed: int = 0):
    """Share refused and its 95% bootstrap interval (device.metrics.bootstrap_ci)."""
    from device.metrics import bootstrap_ci

    share = float(np.mean(refused)) if len(refused) else float("nan")
    low, high = bootstrap_ci(
        lambda _y, r: float(np.mean(r)),
        labels,
        refused.astype(np.float64),
        n_boot=n_boot,
        seed=seed,
    )
    return share, (low, high)


def evaluate(
    set_dir: Path | None,
    ham_dir: Path | None,
    split_csv: Path | None,
    *,
    bundle: Path | None = None,
    portion: str = "test",
    split: str = "test",
    limit: int = 0,
    features: Path | None = None,
    always_analyse: bool = False,
) -> dict[str, Any]:
    """Run the non-lesion set and the split's HAM10000 lesions through the device path."""
    from device.config import DeviceConfig
    from device.imaging.io import read_image
    from device.labels import CLASS_CODES
    from device.runtime.analyzer import Analyzer

    analyzer = Analyzer.from_path(bundle)
    thresholds = DeviceConfig().quality_thresholds()
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"bundle": analyzer.bundle.manifest.bundle_id, "portion": portion}

    def run(path: Path, group: str, image_id: str) -> Outcome | None:
        try:
            frame = read_image(path)
        except SkinScanError as exc:
            log.warning("%s: skipped (%s)", path, exc)
            return None
        outcome = device_outcome(frame, analyzer, thresholds, always_analyse)
        rows.append({"image_id": image_id, "group": group, **_flat(outcome)})
        return outcome

    if set_dir is not None:
        entries = read_index(set_dir, portion)
        if limit:
            entries = _per_category(entries, limit)
        counts: dict[str, Counter] = {}
        for entry in entries:
            outcome = run(set_dir / entry["file"], entry["category"], entry["image_id"])
            if outcome is not None:
                counts.setdefault(entry["category"], Counter())[outcome.screen] += 1
        report["nonlesion"] = {
            cat: {o: int(c[o]) for o in OUTCOMES} | {"n": int(sum(c.values()))}
            for cat, c in counts.items()
        }
        report["nonlesion_monitor"] = int(sum(c["monitor"] for c in counts.values()))
    if ham_dir is not None and split_csv is not None:
        lesions = read_split(split_csv, split)
        if limit:
            lesions = lesions[: limit * 10]
        screens, labels = [], []
        for row in lesions:
            outcome = run(
                ham_dir / "images" / f"{row['image_id']}.jpg", f"ham:{row['dx']}", row["image_id"]
            )
            if outcome is not None:
                screens.append(outcome.screen)
                labels.append(CLASS_CODES.index(row["dx"]))
        refused = np.array([s == "retake" for s in screens])
        share, ci = refused_share(refused, np.array(labels))
        report["ham"] = {
            "split": split,
            "n": len(screens),
            **{o: int(sum(s == o for s in screens)) for o in OUTCOMES},
            "refused_share": share,
            "refused_ci95": list(ci),
        }
    if features is not None:
        _write_rows(features, rows)
    return report


def _per_category(entries: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    seen: Counter = Counter()
    kept = []
    for entry in entries:
        if seen[entry["category"]] < limit:
            seen[entry["category"]] += 1
            kept.append(entry)
    return kept


def _flat(outcome: Outcome) -> dict[str, Any]:
    values = asdict(outcome)
    quality = values.pop("quality")
    values["reasons"] = "; ".join(values["reasons"])
    return values | quality


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def markdown(report: dict[str, Any]) -> str:
    """The per-category table and the HAM10000 refusal line, as Markdown."""
    lines = []
    if "nonlesion" in report:
        lines += [
            f"| category ({report['portion']}) | n | Retake | Uncertain | Monitor | Refer |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        total: Counter = Counter()
        for cat, c in report["nonlesion"].items():
            lines.append(f"| {cat} | {c['n']} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
            total.update(c)
        lines.append(
            f"| **all** | {total['n']} | " + " | ".join(str(total[o]) for o in OUTCOMES) + " |"
        )
    if "ham" in report:
        h = report["ham"]
        lo, hi = h["refused_ci95"]
        lines += [
            "",
            f"HAM10000 {h['split']} lesions: {h['n']}; refused (Retake) {h['retake']} = "
            f"{h['refused_share']:.1%} (95% CI {lo:.1%}-{hi:.1%}); Uncertain {h['uncertain']}, "
            f"Monitor {h['monitor']}, Refer {h['refer']}.",
        ]
    return "\n".join(lines) + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    """Register ``skinscan bench nonlesion``'s arguments."""
    parser.add_argument("--set", type=Path, default=None, help="non-lesion set folder (index.csv)")
    parser.add_argument("--portion", default="test", help="train, test or all (default test)")
    parser.add_argument("--ham", type=Path, default=None, help="HAM10000 folder (images/)")
    parser.add_argument(
        "--split-csv", type=Path, default=None,
        help="split CSV of the lesions (default: SET/ham_split.csv, HAM10000's seed-0 split)",
    )  # fmt: skip
    parser.add_argument("--split", default="test", help="split of the lesions (default test)")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default shipped)")
    parser.add_argument("--limit", type=int, default=0, help="at most N images per category")
    parser.add_argument(
        "--features", type=Path, default=None, help="write per-image measures (CSV)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")


def main(args: argparse.Namespace) -> int:
    """Run, print the Markdown table; 1 when a non-lesion got Monitor or >2% lesions refused."""
    if args.set is None and args.ham is None:
        raise SkinScanError("give --set, --ham or both")
    split_csv = args.split_csv or (args.set / "ham_split.csv" if args.set else None)
    report = evaluate(
        args.set, args.ham, split_csv, bundle=args.bundle, portion=args.portion,
        split=args.split, limit=args.limit, features=args.features,
    )  # fmt: skip
    print(markdown(report), end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = report.get("nonlesion_monitor", 0) > 0
    failed |= report.get("ham", {}).get("refused_share", 0.0) > MAX_REFUSED
    return 1 if failed else 0
