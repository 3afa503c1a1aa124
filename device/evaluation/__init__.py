"""Evaluation of model bundles on labelled image folders (``skinscan eval``)."""
