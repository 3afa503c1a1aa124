"""The clinic side of SkinScan: a Flask web app served by waitress (``skinscan serve``).

It imports sealed exports from scanners into the clinic's own encrypted store,
lists patients and scans, compares follow-ups, records clinicians' reviews and
analyses uploaded images through exactly the device pipeline and bundle.

Modules, one job each:

* :mod:`clinic.store`: the clinic store (the device's encrypted
  ``SqliteScanStore`` plus ``clinic.db`` for users, reviews, imports, patients).
* :mod:`clinic.importer`: opening a sealed export and importing it.
* :mod:`clinic.analysis`: decoding an upload and running the device pipeline.
* :mod:`clinic.followup`: what changed between two scans of one lesion.
* :mod:`clinic.auth`: accounts, password hashing, the per-account login lock-out.
* :mod:`clinic.context`: the app's settings and what its pages share.
* :mod:`clinic.app`: the Flask app factory; :mod:`clinic.views`: pages.
* :mod:`clinic.cli`: ``skinscan serve``, ``serve adduser`` and ``serve unlock``.
* :mod:`clinic.bench`: ``skinscan bench serve``.

``device/`` never imports this package. Administrators' guide: ``docs/clinic.md``.
"""
