"""The colour clamp of preprocessing spec 6: Shades of Gray (Finlayson & Trezzi 2004).

Every camera, lens and LED ring renders skin with its own colour balance. Shades
of Gray estimates the illuminant of an image as the Minkowski p-norm mean of
each channel; with p = 6 it sits between grey-world (p = 1) and max-RGB
(p = infinity), and the top ISIC 2018/2019 entries used it.

Spec 6 does not divide the estimate out. It *clamps* it into the training
images' range of illuminants (:class:`IlluminantRegion`, fitted by
:func:`fit_region` on the training images, centred on their mean chromaticity
``reference``): a frame whose illuminant lies inside that range is left exactly
as it is, and one outside it is relit only as far as the nearest point of the
range. A model trained on the archive's own colours then sees every frame it was
trained for unchanged, and frames from a camera with a colour cast the archive
never had are brought back to one it did have. (Retired specs 4 and 5 mapped
every frame to neutral grey or to the reference; docs/preprocessing.md says why.)

Dermoscope frames have black vignette corners and specular highlights. Both
carry no information about the illuminant, so pixels that are nearly black or
clipped in any channel are left out of the estimate (all pixels are corrected).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from device.errors import ConfigError
from device.imaging.validate import ensure_rgb_uint8

METHODS = ("none", "shades_of_gray")
MIN_LOG_CHROMA_VARIANCE = 1e-4


@dataclass(frozen=True)
class IlluminantRegion:
    """An ellipse of illuminants in log-chromaticity space, centred on the colour reference.

    Coordinates are ``(log(R/G), log(B/G))`` of the Shades-of-Gray estimate. The
    ellipse is ``{x : (x - c)^T S^-1 (x - c) <= radius^2}`` with ``c`` the reference
    and ``S`` the covariance of the training images' coordinates.

    Attributes:
        covariance: ``(var_rg, cov, var_bg)`` of the training images' coordinates.
        radius: Mahalanobis radius of the ellipse (a percentile of the training
            images' own distances); 0 maps every frame to the centre.
        quantile: the percentile of training distances ``radius`` was taken at
            (recorded for the reader; it does not change the computation).
        unusual_radius: beyond this distance (a high percentile of the training
            images' distances, >= ``radius``) the light is unlike almost every training
            image's, and the device says so; None uses ``radius``.
        unusual_quantile: the percentile ``unusual_radius`` was taken at.
    """

    covariance: tuple[float, float, float]
    radius: float
    quantile: float = 0.0
    unusual_radius: float | None = None
    unusual_quantile: float = 0.0

    def __post_init__(self) -> None:
        try:
            var_rg, cov, var_bg = (float(v) for v in self.covariance)
        except (TypeError, ValueError):
            raise ConfigError(
                f"preprocessing.colour.region.covariance: need three numbers, got "
                f"{self.covariance!r}"
            ) from None
        if not (var_rg > 0 and var_bg > 0 and var_rg * var_bg - cov * cov > 0):
            raise ConfigError(
                "preprocessing.colour.region.covariance: not positive definite "
                f"({var_rg}, {cov}, {var_bg})"
            )
        if not (np.isfinite(self.radius) and self.radius >= 0):
            raise ConfigError(
                f"preprocessing.colour.region.radius: must be >= 0, got {self.radius}"
            )
        object.__setattr__(
            self, "covariance", tuple(float(f"{v:.6g}") for v in (var_rg, cov, var_bg))
        )
        object.__setattr__(self, "radius", float(f"{float(self.radius):.6g}"))
        if self.unusual_radius is not None:
            if not (np.isfinite(self.unusual_radius) and self.unusual_radius >= self.radius):
                raise ConfigError(
                    "preprocessing.colour.region.unusual_radius: must be >= radius "
                    f"({self.radius}), got {self.unusual_radius}"
                )
            object.__setattr__(self, "unusual_radius", float(f"{float(self.unusual_radius):.6g}"))

    @property
    def warning_radius(self) -> float:
        """The distance beyond which the light is called unusual."""
        return self.radius if self.unusual_radius is None else self.unusual_radius

    def matrix(self) -> np.ndarray:
        """The 2x2 covariance matrix."""
        var_rg, cov, var_bg = self.covariance
        return np.array([[var_rg, cov], [cov, var_bg]])


@dataclass(frozen=True)
class ColourParams:
    """Parameters of the colour clamp.

    Attributes:
        method: "shades_of_gray" (spec 6) or "none" (spec 3: no colour step).
        power: the Minkowski norm p (6 in the ISIC literature).
        dark: pixels whose brightest channel is below this grey level are ignored
            (vignette corners).
        clipped: pixels with any channel at or above this grey level are ignored
            (specular highlights, saturated sensor).
        max_gain: per-channel gains are clamped to [1 / max_gain, max_gain], so a
            frame that is one colour (a lesion filling it) is not recoloured wildly.
        reference: the training images' mean illuminant chromaticity (R, G, B,
            mean 1): the centre of ``region``; None until training fits both.
        region: the training images' range of illuminants around ``reference``:
            only an estimate outside it is moved, to its boundary.
    """

    method: str = "shades_of_gray"
    power: float = 6.0
    dark: int = 20
    clipped: int = 250
    max_gain: float = 2.5
    reference: tuple[float, float, float] | None = None
    region: IlluminantRegion | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"preprocessing.colour.method: {self.method!r} not in {METHODS}")
        if self.power < 1:
            raise ConfigError(f"preprocessing.colour.power: must be >= 1, got {self.power}")
        if not 0 <= self.dark < self.clipped <= 256:
            raise ConfigError("preprocessing.colour: need 0 <= dark < clipped <= 256")
        if self.max_gain < 1:
            raise ConfigError(f"preprocessing.colour.max_gain: must be >= 1, got {self.max_gain}")
        if self.reference is not None:
            try:
                reference = np.asarray(self.reference, dtype=np.float64)
            except (TypeError, ValueError):
                reference = np.zeros(0)
            if (
                reference.shape != (3,)
                or not np.all(np.isfinite(reference))
                or np.any(reference <= 0)
            ):
                raise ConfigError(
                    "preprocessing.colour.reference: need three positive numbers, got "
                    f"{self.reference!r}"
                )
            # Stored normalised to mean 1 so that equal references compare and hash equal.
            normalised = tuple(round(float(v), 6) for v in reference / reference.mean())
            object.__setattr__(self, "reference", normalised)
        if isinstance(self.region, dict):
            object.__setattr__(self, "region", IlluminantRegion(**self.region))
        if self.region is not None and self.reference is None:
            raise ConfigError("preprocessing.colour.region: needs a colour reference (its centre)")
        if self.reference is not None and self.region is None:
            raise ConfigError(
                "preprocessing.colour.reference without a region: mapping every frame to a "
                "reference colour was retired spec 5; spec 6 clamps into a fitted region"
            )

    @property
    def fitted(self) -> bool:
        """True when the colour step can run: no colour step, or a fitted region."""
        return self.method == "none" or self.region is not None


NO_COLOUR_CONSTANCY = ColourParams(method="none")


def illuminant_estimate(image: np.ndarray, params: ColourParams) -> np.ndarray:
    """The Shades-of-Gray illuminant of an RGB uint8 image: three channel means, 0-255.

    Falls back to every pixel when fewer than 1% are usable (an all-dark frame).
    """
    image = ensure_rgb_uint8(image, "image")
    channels = [image[..., c] for c in range(3)]
    brightest = np.maximum(np.maximum(channels[0], channels[1]), channels[2])
    usable = (brightest >= params.dark) & (brightest < params.clipped)
    if usable.mean() < 0.01:
        usable = np.ones(usable.shape, bool)
    # Per channel, a histogram of the grey levels times a table of their 256 powers:
    # the same mean as pow() on every pixel (to rounding), ten times faster.
    table = _power_table(params.power)
    means = np.array(
        [np.bincount(channel[usable], minlength=256) @ table for channel in channels]
    ) / np.count_nonzero(usable)
    return np.power(means, 1.0 / params.power) * 255.0


@functools.lru_cache(maxsize=8)
def _power_table(power: float) -> np.ndarray:
    """``(v / 255) ** power`` for every grey level v (read-only)."""
    table = np.power(np.arange(256, dtype=np.float64) / 255.0, power)
    table.setflags(write=False)
    return table


def chromaticity(estimate: np.ndarray) -> np.ndarray:
    """An illuminant estimate scaled to channel mean 1 (its colour without its brightness)."""
    estimate = np.maximum(np.asarray(estimate, dtype=np.float64), 1e-3)
    return estimate / estimate.mean()


def log_chromaticity(chroma: np.ndarray) -> np.ndarray:
    """``(log(R/G), log(B/G))`` of a chromaticity (or of rows of chromaticities)."""
    chroma = np.asarray(chroma, dtype=np.float64)
    return np.stack(
        [np.log(chroma[..., 0] / chroma[..., 1]), np.log(chroma[..., 2] / chroma[..., 1])], axis=-1
    )


def from_log_chromaticity(coords: np.ndarray) -> np.ndarray:
    """The chromaticity (mean 1) whose :func:`log_chromaticity` is ``coords``."""
    rgb = np.array([np.exp(coords[0]), 1.0, np.exp(coords[1])])
    return rgb / rgb.mean()


def region_distance(
    chroma: np.ndarray, reference: np.ndarray, region: IlluminantRegion
) -> np.ndarray:
    """Mahalanobis distance of chromaticities from the reference, in the region's metric."""
    offset = log_chromaticity(chroma) - log_chromaticity(reference)
    inverse = np.linalg.inv(region.matrix())
    return np.sqrt(np.einsum("...i,ij,...j->...", offset, inverse, offset))


def clamped_target(
    chroma: np.ndarray, params: ColourParams, distance: float | None = None
) -> np.ndarray:
    """The chromaticity an estimate is moved to: itself inside the region, else its boundary.

    The boundary point is the one on the line to the centre, which is the nearest
    point of the ellipse in the region's own (Mahalanobis) metric. ``distance`` is
    the estimate's :func:`region_distance`, when the caller already has it.
    """
    region, reference = params.region, np.asarray(params.reference)
    assert region is not None
    if distance is None:
        distance = float(region_distance(chroma, reference, region))
    if distance <= region.radius:
        return chroma
    centre = log_chromaticity(reference)
    coords = centre + (log_chromaticity(chroma) - centre) * (region.radius / distance)
    return from_log_chromaticity(coords)


def channel_gains(image: np.ndarray, params: ColourParams) -> np.ndarray:
    """Per-channel gains that clamp the image's illuminant estimate into ``params.region``.

    All ones for a frame already inside the region (or with no colour step); the
    estimate's brightness is kept (exposure is not colour).
    """
    return colour_correction(image, params)[0]


def colour_correction(image: np.ndarray, params: ColourParams) -> tuple[np.ndarray, bool]:
    """(:func:`channel_gains`, whether the light is unusual) from one illuminant estimate.

    The light is unusual when the estimate lies beyond the region's
    ``unusual_radius``: further from the training images' light than nearly all of
    them. With no colour step nothing is called unusual.

    Raises:
        ConfigError: a Shades-of-Gray step whose region was never fitted.
    """
    if params.method == "none":
        return np.ones(3), False
    if params.region is None:
        raise ConfigError(
            "preprocessing.colour.region: none fitted; spec 6 clamps the colour into the "
            "training images' illuminant region, which training fits on its training split "
            "(training.data.with_colour_reference) before anything is preprocessed"
        )
    chroma = chromaticity(illuminant_estimate(image, params))
    distance = float(region_distance(chroma, np.asarray(params.reference), params.region))
    target = clamped_target(chroma, params, distance)
    unusual = distance > params.region.warning_radius
    gains = target / chroma
    return np.clip(gains, 1.0 / params.max_gain, params.max_gain), unusual


def fit_region(
    images,
    params: ColourParams,
    quantile: float = 0.975,
    unusual_quantile: float = 0.99,
) -> tuple[tuple[float, float, float], IlluminantRegion]:
    """The training images' illuminant range: (reference, region) fitted on ``images``.

    The reference is the geometric-mean chromaticity, so that a cast and its
    opposite cancel; the region's covariance is that of the images' log-chromaticities, and its
    radius the ``quantile`` of their own Mahalanobis distances, so that that share
    of the training images lies inside and is never recoloured. Its unusual radius
    is the ``unusual_quantile`` of the same distances (at least the radius).

    Raises:
        ValueError: fewer than 3 images, or a quantile outside (0, 1].
    """
    for name, value in (("quantile", quantile), ("unusual_quantile", unusual_quantile)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    chromas = np.array([chromaticity(illuminant_estimate(image, params)) for image in images])
    if len(chromas) < 3:
        raise ValueError("fit_region needs at least three images")
    coords = log_chromaticity(chromas)
    centre = coords.mean(axis=0)
    reference = from_log_chromaticity(centre)
    cov = np.cov(coords, rowvar=False)
    # A floor of 1% in each log ratio, far below a visible cast, keeps the ellipse
    # well-defined when the training images share one white balance exactly.
    cov[np.diag_indices(2)] = np.maximum(np.diag(cov), MIN_LOG_CHROMA_VARIANCE)
    if np.linalg.det(cov) < MIN_LOG_CHROMA_VARIANCE**2:  # images along one line of colours
        cov += np.eye(2) * MIN_LOG_CHROMA_VARIANCE
    provisional = IlluminantRegion((cov[0, 0], cov[0, 1], cov[1, 1]), radius=1.0)
    distances = region_distance(chromas, reference, provisional)
    radius = float(np.quantile(distances, quantile))
    unusual = max(radius, float(np.quantile(distances, unusual_quantile)))
    region = IlluminantRegion(
        provisional.covariance,
        radius=radius,
        quantile=quantile,
        unusual_radius=unusual,
        unusual_quantile=unusual_quantile,
    )
    return tuple(float(v) for v in reference), region  # type: ignore[return-value]


def apply_gains(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``image`` with each channel scaled by ``gains`` (the same array when all are 1)."""
    gains = np.asarray(gains, dtype=np.float32)
    if np.all(gains == 1.0):
        return image
    corrected = image.astype(np.float32) * gains
    return np.clip(corrected + 0.5, 0, 255).astype(np.uint8)


def clamp_colour(image: np.ndarray, params: ColourParams) -> tuple[np.ndarray, bool]:
    """(``image`` with its illuminant clamped into the region, whether the light is unusual).

    The same array when nothing moves (no colour step, or a frame inside the region).
    """
    gains, unusual = colour_correction(image, params)
    return apply_gains(image, gains), unusual


def normalise_colour(image: np.ndarray, params: ColourParams) -> np.ndarray:
    """Return ``image`` with its illuminant clamped into the region (uint8 RGB in and out)."""
    image = ensure_rgb_uint8(image, "image")
    return clamp_colour(image, params)[0]
