"""The project's exception hierarchy.

Every failure a user can cause or meet in the field maps to one of these types.
Each also derives from the closest built-in exception, so callers may catch
either (the gpiozero pattern: ``class BadPinFactory(GPIOZeroError, ImportError)``).
"""

from __future__ import annotations


class SkinScanError(Exception):
    """Base class of every error SkinScan raises on purpose."""


class ImageError(SkinScanError, ValueError):
    """An image array is unusable: empty, wrong dtype, wrong channels, NaN, too small."""


class CorruptImageError(ImageError):
    """An image file cannot be decoded."""


class ConfigError(SkinScanError, ValueError):
    """The configuration is invalid; the message names the dotted key."""


class BundleError(SkinScanError):
    """The model bundle is invalid. The message names the file and the problem."""


class BundleFileMissingError(BundleError, FileNotFoundError):
    """A file the bundle needs is absent."""


class BundleChecksumError(BundleError):
    """A bundle file does not match the sha256 in its manifest."""


class ManifestError(BundleError):
    """manifest.json is malformed, has unknown fields or invalid values."""


class TensorMismatchError(BundleError):
    """The interpreter's tensors disagree with the manifest."""


class RuntimeUnavailableError(SkinScanError, ImportError):
    """No TFLite runtime (LiteRT, tflite-runtime or tf.lite) can be imported."""


class CameraError(SkinScanError, OSError):
    """The camera is missing, disconnected, or returned no frame."""


class StorageError(SkinScanError, OSError):
    """The scan store cannot be read or written."""


class DiskFullError(StorageError):
    """There is no space left to save a record; nothing partial was written."""


class TamperError(StorageError):
    """A record or file failed authentication: it was altered or the key is wrong."""


class DatasetError(SkinScanError, ValueError):
    """A dataset folder does not have the expected HAM10000 layout."""


class BundleModelError(BundleError):
    """A bundle model file passes its checksum but no runtime can load or run it."""


class AdaptationError(BundleError):
    """A site-adapted bundle's head does not fit it: wrong shape, another trunk or spec."""


class DocsError(SkinScanError, ValueError):
    """A document's generated block or screenshot list is malformed, or names no known source."""


class SigningKeyError(SkinScanError, ValueError):
    """A bundle signing key file is missing, malformed, or of the wrong kind (an export key)."""


class BundleSignatureError(BundleError):
    """A bundle's ``manifest.sig`` is malformed or does not verify: altered after signing."""


class BundleUnsignedError(BundleSignatureError):
    """A bundle has no ``manifest.sig``: it was never signed, so a scanner will not install it."""


class BundleUntrustedKeyError(BundleSignatureError):
    """A bundle is signed by a key this scanner was not provisioned to trust (or it trusts none)."""


class BundleBaseMismatchError(AdaptationError):
    """An adapted bundle's manifest names a base trunk other than the model it carries or knows."""


class BundlePreprocessingError(ManifestError):
    """A bundle needs a preprocessing spec this software does not run, or not its base's spec."""


class BundleStoreError(BundleError):
    """The scanner's bundle store cannot install or roll back (nothing to roll back, busy...)."""
