"""Several archives as one training set: acquisition sources, held-out folds, balanced weights.

A *source* is where an image was acquired: for HAM10000 the ``dataset`` column of its
metadata (``rosendahl``, ``vidir_modern``, ``vidir_molemax``, ``vienna_dias``); for any
other archive folder, the folder's name (``isic-archive``). Models are judged on a
source they were not trained on (DESIGN.md, "Judging a model"), so this module gives:

- :func:`load_sources`: every archive read into one sample list (each sample knows its
  source and its archive), an image id seen in an earlier archive skipped with its reason;
- :func:`source_split`: a lesion-grouped train/val/test split stratified by source and
  diagnosis, so every source keeps its share in every split;
- :func:`held_out_fold`: the images of one source, and the rest with every lesion that
  also has an image in that source removed (nine HAM10000 lesions span two sources);
- :func:`balanced_weights`: per-image weights under which no class and no source
  dominates the loss.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from device.errors import DatasetError
from device.labels import CLASS_CODES
from training.data import Sample, group_ids, grouped_split, load_sources

__all__ = [
    "balanced_weights",
    "extend_split",
    "held_out_fold",
    "load_sources",
    "source_counts",
    "source_split",
]

log = logging.getLogger(__name__)


def source_counts(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    """Source -> diagnosis -> image count, both in sorted order (for provenance)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        counts[sample.source][sample.dx] += 1
    return {
        source: {dx: counts[source][dx] for dx in CLASS_CODES if counts[source][dx]}
        for source in sorted(counts)
    }


def _by_source_and_diagnosis(sample: Sample) -> tuple[str, str]:
    return (sample.source, sample.dx)


def source_split(
    samples: list[Sample],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> dict[str, str]:
    """A lesion-grouped split, stratified by (source, diagnosis).

    As :func:`training.data.grouped_split`, with groups dealt per (source, diagnosis)
    stratum, so each source keeps about ``fractions`` of each of its classes in each split.

    Returns:
        image_id -> split name.
    """
    return grouped_split(samples, seed, fractions, stratum=_by_source_and_diagnosis)


def held_out_fold(samples: list[Sample], source: str) -> tuple[list[Sample], list[Sample]]:
    """Split samples into (training sources, held-out source) for one fold.

    A lesion with images in the held-out source and in another is left out of the
    training side, so no view of a held-out lesion is trained on.

    Raises:
        DatasetError: no image comes from ``source``.
    """
    held_groups = {
        group
        for group, sample in zip(group_ids(samples), samples, strict=True)
        if sample.source == source
    }
    if not held_groups:
        known = ", ".join(sorted({s.source for s in samples}))
        raise DatasetError(f"no image comes from source {source!r}; sources: {known}")
    train: list[Sample] = []
    held: list[Sample] = []
    dropped = 0
    for group, sample in zip(group_ids(samples), samples, strict=True):
        if sample.source == source:
            held.append(sample)
        elif group in held_groups:
            dropped += 1
        else:
            train.append(sample)
    if dropped:
        log.info("fold %s: %d training images share a lesion with it, left out", source, dropped)
    return train, held


def balanced_weights(samples: Sequence[Sample], source_power: float = 0.5) -> np.ndarray:
    """Per-image loss weights under which no class and no source dominates.

    The weight is the inverse-frequency class weight ``n / (K n_c)`` times a source
    weight ``(n / (S n_s)) ** source_power``: with ``source_power`` 1 every source
    counts as much as any other, with 0 sources count by their size. The square
    root (0.5) keeps a small source from being drawn so often that its few images
    are memorised. Weights are normalised to mean 1.

    Returns:
        float64 array (N,).
    """
    if not samples:
        return np.zeros(0)
    n = len(samples)
    by_class = Counter(s.dx for s in samples)
    by_source = Counter(s.source for s in samples)
    k, s_count = len(by_class), len(by_source)
    weights = np.array(
        [
            (n / (k * by_class[s.dx])) * (n / (s_count * by_source[s.source])) ** source_power
            for s in samples
        ],
        dtype=np.float64,
    )
    return weights / weights.mean()


def extend_split(
    samples: list[Sample],
    kept: Mapping[str, str],
    splitter: Callable[..., dict[str, str]] = source_split,
    seed: int = 0,
) -> dict[str, str]:
    """Keep an earlier split for the images it names; split only the others.

    A lesion (or byte-identical file) with any image in ``kept`` goes wholly to that
    image's split, so a new image of an old test lesion is never trained on. The
    remaining groups are split by ``splitter`` among themselves. Images of ``kept``
    that are not in ``samples`` are ignored.

    Args:
        samples: every image of the run.
        kept: image_id -> split of the earlier run (its split.csv).
        splitter: how the new images are split (default :func:`source_split`).
        seed: the new images' split seed.

    Returns:
        image_id -> split name for every sample.

    Raises:
        DatasetError: the earlier split puts two images of one lesion on different sides.
    """
    groups = group_ids(samples)
    split_of_group: dict[int, str] = {}
    for group, sample in zip(groups, samples, strict=True):
        split = kept.get(sample.image_id)
        if split is None:
            continue
        if split_of_group.setdefault(group, split) != split:
            raise DatasetError(
                f"the kept split puts lesion {sample.lesion_id} in both "
                f"{split_of_group[group]} and {split}; it is not lesion-grouped"
            )
    fresh = [s for g, s in zip(groups, samples, strict=True) if g not in split_of_group]
    assignment = splitter(fresh, seed=seed) if fresh else {}
    for group, sample in zip(groups, samples, strict=True):
        if group in split_of_group:
            assignment[sample.image_id] = split_of_group[group]
    log.info(
        "split kept for %d images, %d new images split afresh",
        len(samples) - len(fresh),
        len(fresh),
    )
    return assignment
