"""The clinic app analyses uploads with a site-adapted bundle, signed or not.

The adapted bundle is the shipped bundle with a new float head (``head.npz`` and a
sealed ``adaptation`` section), built by ``tests/signed_bundles.py`` as the bundle
contract describes; ``skinscan serve --bundle DIR`` hands such a folder to
:class:`clinic.analysis.AnalysisService` exactly as here (``ClinicSettings.bundle_dir``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_wtf")
pytest.importorskip("argon2")

from clinic_support import lesion_jpeg, login, make_app, make_keys, upload
from signed_bundles import adapted_bundle
from signed_bundles import make_keys as make_signing_keys

from device.runtime.bundle import DEFAULT_BUNDLE_DIR


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    private, _, _ = make_signing_keys(root / "signing")
    return {
        "unsigned": adapted_bundle(root / "unsigned", None, base=DEFAULT_BUNDLE_DIR, seed=3),
        "signed": adapted_bundle(root / "signed", private, base=DEFAULT_BUNDLE_DIR, seed=3),
    }


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_an_upload_is_analysed_with_an_adapted_bundle(tmp_path, bundles, kind):
    from clinic.analysis import AnalysisService

    bundle = bundles[kind]
    assert (bundle / "manifest.sig").exists() == (kind == "signed")
    base = AnalysisService(max_pixels=2_000_000)
    adapted = AnalysisService(bundle, max_pixels=2_000_000)
    assert adapted.adaptation_label == "adapted for clinic-north, 2026-12-07"
    assert base.adaptation_label is None
    assert adapted.bundle_id == f"{base.bundle_id}-clinic-north"

    private, _ = make_keys(tmp_path / "keys")
    app = make_app(tmp_path / "clinic", private, None, bundle_dir=bundle)
    try:
        client = app.test_client()
        assert login(client).status_code == 302
        page = client.get("/upload").get_data(as_text=True)
        assert adapted.bundle_id in page and "adapted for clinic-north, 2026-12-07" in page
        response = upload(client, lesion_jpeg(5))
        assert response.status_code == 302, response.get_data(as_text=True)
        scan_id = response.headers["Location"].rsplit("/", 1)[-1]
        record = app.extensions["skinscan_clinic"].store.get_scan(scan_id)
    finally:
        app.extensions["skinscan_clinic"].store.close()
    assert record.bundle_id == adapted.bundle_id
    # The adapted head decided, not the shipped one: same photo, other probabilities.
    path = tmp_path / "lesion.jpg"
    path.write_bytes(lesion_jpeg(5))
    base_result, _ = base.analyse_file(path)
    mine = np.array([record.probabilities[c] for c in sorted(record.probabilities)])
    theirs = np.array([base_result.probabilities[c] for c in sorted(base_result.probabilities)])
    assert np.abs(mine - theirs).max() > 0.01
