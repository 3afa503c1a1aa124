"""Analysing an uploaded image through exactly the device pipeline and bundle.

The steps are the device app's capture path (``device.app.runner.App._capture``),
with the same functions: the quality gate
(:func:`device.imaging.quality.assess_quality` with the device config's
thresholds), the :class:`device.runtime.analyzer.Analyzer` (preprocessing, int8
model, Grad-CAM) on the bundle the device would load, then
:func:`device.app.results.result_from_analysis` and
:func:`device.app.results.record_from_result`, so an upload becomes the same
record a scanner would save. The file is decoded by
:func:`device.imaging.io.read_image`, the reader ``skinscan eval`` uses.

Before decoding, the upload's type and pixel count are read from its header, so
a non-image or a decompression bomb is refused without allocating its pixels.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from device.errors import CorruptImageError, ImageError
from device.records.api import ScanRecord

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 64
UPLOAD_DEVICE_ID = "clinic-upload"


class UploadError(ImageError):
    """An uploaded file is not an image the pipeline can analyse; the message says why."""


class QualityGateError(ImageError):
    """The uploaded image fails the device's quality gate: no diagnosis is given.

    Attributes:
        reasons: the gate's reasons, e.g. "blurred — hold still".
        metrics: the measured quality metrics.
    """

    def __init__(self, reasons: tuple[str, ...], metrics: dict[str, float]) -> None:
        super().__init__("the image fails the quality gate: " + "; ".join(reasons))
        self.reasons = reasons
        self.metrics = metrics


@dataclass(frozen=True)
class UploadInfo:
    """What an upload's header says: "JPEG" or "PNG", and its size in pixels."""

    kind: str
    width: int
    height: int


# JPEG frame headers (SOF0-SOF15 but DHT, JPG and DAC) carry the image size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when it is not there."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when none comes before the scan."""
    at = 2  # after SOI
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE_MARKERS:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF_MARKERS:
            if length < 7 or at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker == 0xDA or length < 2:  # the scan began without a frame header
            return None
        at += 2 + length
    return None


def sniff_upload(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> UploadInfo:
    """Check an upload's type and size from its header, without decoding its pixels.

    The size is read from the PNG or JPEG header by this module, before Pillow
    opens the file, so a huge image is refused as too large in the same words
    whatever its kind (Pillow's own check would call it a decompression bomb).

    Raises:
        UploadError: empty, not a JPEG or PNG, an unreadable header, too small or too large.
    """
    if not data:
        raise UploadError("the file is empty")
    if data.startswith(JPEG_MAGIC):
        kind, size = "JPEG", _jpeg_size(data)
    elif data.startswith(PNG_MAGIC):
        kind, size = "PNG", _png_size(data)
    else:
        raise UploadError("this is not a JPEG or PNG image; upload a photo of the lesion")
    if size is None:
        raise UploadError(f"the {kind} file is damaged: its header has no image size")
    width, height = size
    if width * height > max_pixels:
        raise UploadError(
            f"the image is too large: {width}x{height} pixels "
            f"({width * height / 1e6:.0f} MP; at most {max_pixels / 1e6:.0f} MP)"
        )
    if min(width, height) < MIN_SIDE:
        raise UploadError(f"the image is too small: {width}x{height} pixels (at least {MIN_SIDE})")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as header:
            if header.size != (width, height):
                raise ValueError(f"it says {header.size[0]}x{header.size[1]} pixels elsewhere")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(
            f"the {kind} file is damaged: its header cannot be read ({exc})"
        ) from None
    return UploadInfo(kind, int(width), int(height))


class AnalysisService:
    """The device pipeline for uploads: one bundle, one analyzer, used one request at a time.

    Args:
        bundle_dir: the model bundle (default: the one the device config names,
            else the shipped bundle).
        config_file: a device config file (default: ``/etc/skinscan/config.toml``
            if present, else the shipped defaults); gives the quality thresholds,
            the heatmap opacity and the bundle.
        max_pixels: the largest image accepted.

    Raises:
        BundleError: the bundle is invalid (the same checks as on the device).
    """

    def __init__(
        self,
        bundle_dir: str | Path | None = None,
        *,
        config_file: str | Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        from device.config import load_config
        from device.runtime.analyzer import Analyzer

        config = load_config(config_file)
        self.thresholds = config.quality_thresholds()
        self.heatmap_alpha = float(config.display.heatmap_alpha)
        self.max_pixels = int(max_pixels)
        self.analyzer = Analyzer.from_path(bundle_dir or config.model.bundle or None)
        self.bundle = self.analyzer.bundle
        self.referral_threshold = float(self.analyzer.calibration.referral_threshold)
        self._lock = threading.Lock()  # the Analyzer is not for concurrent use
        self._count = 0

    @property
    def bundle_id(self) -> str:
        """The loaded bundle's id."""
        return str(self.bundle.bundle_id)

    @property
    def adaptation_label(self) -> str | None:
        """``"adapted for <site>, <date>"`` when the bundle is site-adapted, else None."""
        return self.bundle.manifest.adaptation_label

    def analyse_file(self, path: Path) -> tuple[Any, Any]:
        """Decode ``path`` and run the device pipeline: (ResultView, QualityReport).

        Raises:
            CorruptImageError: the file cannot be decoded (e.g. a truncated JPEG).
            QualityGateError: the frame fails the quality gate.
        """
        from device.app.results import result_from_analysis
        from device.imaging.io import read_image
        from device.imaging.quality import assess_quality

        frame = read_image(path)
        report = assess_quality(frame, self.thresholds)
        if not report.passed:
            raise QualityGateError(tuple(report.reasons), report.metrics())
        with self._lock:
            analysis = self.analyzer.analyze(frame, explain=True)
            self._count += 1
            key = f"upload{self._count}"
        result = result_from_analysis(
            analysis,
            referral_threshold=self.referral_threshold,
            quality=report.metrics(),
            scan_key=key,
            heatmap_alpha=self.heatmap_alpha,
            frame=frame,
        )
        return result, report

    def analyse_upload(
        self,
        data: bytes,
        temp_path: Path,
        *,
        uploaded_by: str,
        patient_ref: str | None = None,
        body_site: str | None = None,
    ) -> ScanRecord:
        """Analyse an uploaded JPEG or PNG and return the record to store.

        Args:
            data: the uploaded file.
            temp_path: where to write it while it is decoded (deleted afterwards).
            uploaded_by: the clinician's account (kept as the record's operator).
            patient_ref: optional patient reference (an opaque card reference).
            body_site: optional body site.

        Raises:
            UploadError: not a JPEG/PNG, damaged, too large or too small.
            QualityGateError: the image fails the quality gate (no diagnosis).
            InvalidRecordError: the patient reference is refused.
        """
        from device.app.results import record_from_result

        sniff_upload(data, self.max_pixels)
        try:
            temp_path.write_bytes(data)
            try:
                result, _report = self.analyse_file(temp_path)
            except CorruptImageError as exc:
                detail = str(exc).split(": ", 1)[-1]
                raise UploadError(f"the image cannot be decoded: {detail}") from None
        finally:
            with contextlib.suppress(OSError):
                temp_path.unlink()
        record = record_from_result(
            result,
            device_id=UPLOAD_DEVICE_ID,
            bundle_id=self.bundle_id,
            bundle_sha256=str(self.bundle.model_sha256),
        )
        return replace(
            record,
            patient_ref=patient_ref or None,
            body_site=body_site or None,
            operator=uploaded_by,
            extra={**record.extra, "source": "clinic upload"},
        )
