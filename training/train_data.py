"""A run's data: its samples and split, the cached images, class and source weights,
and the seeded, augmented batches."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from device.imaging.pipeline import PreprocessSpec
from device.labels import CLASS_CODES
from training.augment import AugmentConfig, augment
from training.train_config import (
    TrainConfig,
    _write_json,
)

log = logging.getLogger(__name__)


def _class_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    counts = np.bincount(labels, minlength=len(CLASS_CODES)).astype(np.float64)
    if mode == "none":
        return np.ones(len(CLASS_CODES))
    if mode != "inverse_frequency":
        raise ValueError(f"class_weighting must be 'inverse_frequency' or 'none', got {mode!r}")
    return np.where(counts > 0, counts.sum() / (len(CLASS_CODES) * np.maximum(counts, 1)), 0.0)


def make_batches(
    cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    sample_weights: np.ndarray | None = None,
):
    """A Keras PyDataset of augmented, one-hot, weighted batches.

    Each image's loss weight is ``sample_weights`` when given (class and source
    balanced, :func:`training.sources.balanced_weights`), else its class weight.
    """
    import keras

    if sample_weights is None:
        sample_weights = _class_weights(labels, cfg.class_weighting)[labels]
    augment_cfg = AugmentConfig.from_dict(cfg.augment)

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self._order = self._shuffle()

        def _shuffle(self) -> np.ndarray:
            return np.random.default_rng([cfg.seed, self.epoch]).permutation(len(labels))

        def __len__(self) -> int:
            return steps

        def __getitem__(self, index: int):
            rng = np.random.default_rng([cfg.seed, self.epoch, index])
            rows = np.take(
                self._order,
                np.arange(index * cfg.batch_size, (index + 1) * cfg.batch_size),
                mode="wrap",
            )
            x = np.stack([augment(images[r], rng, augment_cfg) for r in rows]).astype(np.float32)
            y = np.eye(len(CLASS_CODES), dtype=np.float32)[labels[rows]]
            return x, y, sample_weights[rows].astype(np.float32)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._order = self._shuffle()

    return Batches()


class _Data:
    """The run's split as arrays in memory."""

    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        from tqdm import tqdm

        from training.data import (
            build_cache,
            dataset_hash,
            read_split_csv,
            split_seed_of,
            with_colour_reference,
            write_split_csv,
        )
        from training.sources import extend_split, source_counts

        samples, load_report, splitter = _load_samples(cfg)
        split_path = run_dir / "split.csv"
        if not split_path.is_file():
            seed = split_seed_of(asdict(cfg))
            if cfg.keep_split:
                kept = {r["image_id"]: r["split"] for r in read_split_csv(Path(cfg.keep_split))}
                assignment = extend_split(samples, kept, splitter, seed)
            else:
                assignment = splitter(samples, seed=seed)
            write_split_csv(split_path, samples, assignment)
        assignment = {r["image_id"]: r["split"] for r in read_split_csv(split_path)}
        samples = [s for s in samples if s.image_id in assignment]
        if cfg.limit_per_split:
            samples = _stratified_subset(samples, assignment, cfg.limit_per_split)
        spec = PreprocessSpec.from_dict(cfg.preprocessing)
        train_samples = [s for s in samples if assignment[s.image_id] == "train"]
        fitted = with_colour_reference(spec, train_samples)
        if fitted != spec:
            # Recorded in config.json at once, so a resumed run and the conversion reuse it.
            spec = fitted
            cfg.preprocessing = spec.to_dict()
            _write_json(run_dir / "config.json", asdict(cfg))
        cache = build_cache(
            samples,
            Path(cfg.cache_dir),
            spec,
            workers=cfg.workers,
            progress=lambda it: tqdm(it, total=len(samples), desc="preprocess", unit="img"),
        )
        for image_id, reason in cache.failed.items():
            load_report.skip(image_id, reason)
        self.samples = [s for s in samples if s.image_id not in cache.failed]
        self.skipped = load_report.skipped
        self.layout, self.grouping = load_report.layout, load_report.grouping
        self.data_hash = dataset_hash(self.samples)
        self.sources = source_counts(self.samples)
        self.split_hash = _file_hash(split_path)
        self.by_split: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
        for split in ("train", "val", "test"):
            chosen = [s for s in self.samples if assignment[s.image_id] == split]
            rows = cache.rows(s.image_id for s in chosen)
            images = np.asarray(cache.images[np.sort(rows)])[np.argsort(np.argsort(rows))]
            labels = np.array([s.label for s in chosen], dtype=np.int64)
            self.by_split[split] = (images, labels, chosen)


def _load_samples(cfg: TrainConfig):
    """(samples, load report, split function) of a run: one archive, or several sources.

    One archive without a held-out source reads and splits exactly as before
    (lesion-grouped, stratified by diagnosis), so old runs and their split files stay
    valid. Several archives, or a held-out source, read every archive with its
    sources and split stratified by (source, diagnosis).
    """
    from training.data import LoadReport, grouped_split, load_metadata, load_sources
    from training.sources import held_out_fold, source_split

    if not cfg.extra_data_dirs and not cfg.hold_out_source:
        samples, report = load_metadata(cfg.data_dir)
        return samples, report, grouped_split
    samples, reports = load_sources([cfg.data_dir, *cfg.extra_data_dirs])
    merged = LoadReport(
        kept=len(samples),
        skipped=[entry for r in reports for entry in r.skipped],
        layout="+".join(r.layout for r in reports),
        grouping="; ".join(r.grouping for r in reports),
    )
    if cfg.hold_out_source:
        samples, held = held_out_fold(samples, cfg.hold_out_source)
        log.info("source %s held out: %d images never used", cfg.hold_out_source, len(held))
    return samples, merged, source_split


def _stratified_subset(samples: list, assignment: dict[str, str], limit: int) -> list:
    """At most ``limit`` images per split, dealt round-robin over the classes (smoke runs)."""
    kept: list = []
    for split in ("train", "val", "test"):
        per_class = {
            dx: [s for s in samples if s.dx == dx and assignment[s.image_id] == split]
            for dx in CLASS_CODES
        }
        chosen: list = []
        depth = 0
        while len(chosen) < limit and any(len(v) > depth for v in per_class.values()):
            chosen += [v[depth] for v in per_class.values() if len(v) > depth]
            depth += 1
        kept += chosen[:limit]
    return kept


def _file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def train_weights(cfg: TrainConfig, data: _Data) -> np.ndarray | None:
    """Per-image loss weights of the training split: class and source balanced.

    None (class weights only, as before) for a run with one source or ``source_power`` 0.
    """
    from training.sources import balanced_weights

    chosen = data.by_split["train"][2]
    if len(data.sources) < 2 or cfg.source_power == 0 or cfg.class_weighting == "none":
        return None
    return balanced_weights(chosen, cfg.source_power).astype(np.float32)
