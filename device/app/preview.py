"""The live view's overlay: quality light on every frame, lesion box a few times a second.

The quality gate is cheap (a few ms) and runs on every frame. Segmentation costs
more, so the box is refreshed every ``box_every`` frames and reused in between;
a hand-held dermoscope moves little in 150 ms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from device.app.events import Frame
from device.imaging.quality import QualityThresholds, assess_quality
from device.ui.screens import Box

log = logging.getLogger(__name__)


class FpsMeter:
    """Frames per second, smoothed over recent frames.

    Args:
        smoothing: weight of the newest interval in the running average.
        clock: monotonic clock in seconds.
    """

    def __init__(self, smoothing: float = 0.1, clock: Callable[[], float] = time.perf_counter):
        self.smoothing = smoothing
        self._clock = clock
        self._last: float | None = None
        self._interval: float | None = None

    def tick(self) -> float:
        """Record a frame; returns the current rate (0 until two frames were seen)."""
        now = self._clock()
        if self._last is not None:
            interval = max(now - self._last, 1e-6)
            if self._interval is None:
                self._interval = interval
            else:
                self._interval += self.smoothing * (interval - self._interval)
        self._last = now
        return 0.0 if self._interval is None else 1.0 / self._interval

    def reset(self) -> None:
        """Forget past frames (after a pause such as an analysis)."""
        self._last = None
        self._interval = None


def find_lesion_box(frame: np.ndarray, work_long_side: int = 200) -> Box | None:
    """The lesion's bounding box in frame coordinates, or None (same segmentation as analysis)."""
    from device.imaging.pipeline import to_working_size
    from device.imaging.segment import SegmentParams, segment_lesion

    work, scale = to_working_size(frame, work_long_side)
    box = segment_lesion(work, SegmentParams()).box
    if box is None:
        return None
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = box
    return (
        max(0, round(x0 * scale)),
        max(0, round(y0 * scale)),
        min(width, round(x1 * scale)),
        min(height, round(y1 * scale)),
    )


class PreviewAnalyzer:
    """Turns live-view frames into :class:`~device.app.events.Frame` events.

    Args:
        thresholds: the quality gate.
        box_every: refresh the lesion box every this many frames.
        fps: the frame-rate meter.
    """

    def __init__(
        self,
        thresholds: QualityThresholds,
        box_every: int = 6,
        fps: FpsMeter | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.box_every = max(1, box_every)
        self.fps = fps or FpsMeter()
        self._count = 0
        self._box: Box | None = None

    def analyze(self, image: np.ndarray) -> Frame:
        """Quality verdict for this frame, the (recent) lesion box, and the frame rate."""
        report = assess_quality(image, self.thresholds)
        if self._count % self.box_every == 0:
            self._box = find_lesion_box(image)
        self._count += 1
        reason = report.reasons[0] if report.reasons else None
        return Frame(
            image=image,
            lesion_box=self._box,
            quality_ok=report.passed,
            reason=reason,
            fps=self.fps.tick(),
        )

    def reset(self) -> None:
        """Start afresh after a pause: new box on the next frame, fps from scratch."""
        self._count = 0
        self._box = None
        self.fps.reset()
