"""The device-side model runtime: bundle loading, classifier, Grad-CAM, decision, analyzer.

Nothing here imports TensorFlow or Keras; TFLite runtimes are imported lazily.
"""

from device.runtime.analyzer import Analysis, Analyzer
from device.runtime.bundle import DEFAULT_BUNDLE_DIR, Bundle, load_bundle
from device.runtime.decision import Decision, RankedClass, decide

__all__ = [
    "DEFAULT_BUNDLE_DIR",
    "Analysis",
    "Analyzer",
    "Bundle",
    "Decision",
    "RankedClass",
    "decide",
    "load_bundle",
]
