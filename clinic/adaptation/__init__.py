"""Site adaptation: a bundle's 7-class head refitted on one clinic's confirmed cases.

``skinscan adapt`` keeps the validated int8 trunk byte for byte and fits only the
GAP -> Dense head (1280 x 7 + bias), L2-anchored to the base head and
class-balanced, on the pooled features the device pipeline computes for each
confirmed case. It shows cross-validated evidence (base against adapted) first and
refuses to write a bundle the evidence does not support. Guide: docs/adaptation.md.

Modules, one job each:

* :mod:`clinic.adaptation.cases`: :class:`Case` and the ``--metadata CSV --images DIR`` loader.
* :mod:`clinic.adaptation.base_head`: the base bundle's head (W0, b0) read from its model.
* :mod:`clinic.adaptation.features`: pooled features and base logits through the
  device pipeline (quality gate included), in worker processes, with an optional cache.
* :mod:`clinic.adaptation.head_fit`: the anchored, class-balanced logistic head.
* :mod:`clinic.adaptation.evidence`: repeated stratified cross-validation, base vs adapted.
* :mod:`clinic.adaptation.rules`: when adaptation is refused.
* :mod:`clinic.adaptation.model_card`: the adapted bundle's MODEL_CARD.md.
* :mod:`clinic.adaptation.writer`: the adapted bundle, sealed, written atomically.
* :mod:`clinic.adaptation.adapt`: the whole run; :mod:`clinic.adaptation.cli`: ``skinscan adapt``.
* :mod:`clinic.adaptation.bench`: ``skinscan bench adapt``, simulated sites from held-out sources.

Nothing here imports TensorFlow or Flask.
"""
