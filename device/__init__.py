"""SkinScan device package: the image pipeline, runtime and app that run on the Pi.

Nothing in this package imports TensorFlow or Keras. Hardware libraries are
imported lazily inside their backend modules so the package imports anywhere.
"""

__version__ = "0.1.0"
