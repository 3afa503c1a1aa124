"""Bundle signing keys, manifest.sig, and every refusal of verify_signed_bundle."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import stat
from pathlib import Path

import pytest
from signed_bundles import adapted_bundle, make_keys, rewrite_manifest, signed_bundle

from device.bundles import (
    find_bundles_on,
    generate_signing_keypair,
    key_id,
    load_trusted_keys,
    sign_bundle,
    verify_signed_bundle,
)
from device.bundles.keys import load_signing_key, load_verify_key
from device.bundles.usb import describe_candidate
from device.errors import (
    AdaptationError,
    BundleBaseMismatchError,
    BundleChecksumError,
    BundleError,
    BundlePreprocessingError,
    BundleSignatureError,
    BundleUnsignedError,
    BundleUntrustedKeyError,
    SigningKeyError,
)
from device.records.export import generate_clinic_keypair
from device.runtime.manifest import MANIFEST_NAME


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    return make_keys(tmp_path / "keys")


# ---- keys ------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_names_keys_by_hash(tmp_path):
    private, public = generate_signing_keypair(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    raw = load_verify_key(public)
    assert key_id(raw) == hashlib.sha256(raw).hexdigest()[:16]
    assert bytes(load_signing_key(private).verify_key) == raw
    assert list(load_trusted_keys([public])) == [key_id(raw)]


def test_keygen_never_overwrites_a_key(tmp_path):
    generate_signing_keypair(tmp_path / "k")
    before = (tmp_path / "k" / "signing.key").read_bytes()
    with pytest.raises(SigningKeyError, match="exists already"):
        generate_signing_keypair(tmp_path / "k")
    assert (tmp_path / "k" / "signing.key").read_bytes() == before


def test_an_export_key_is_refused_loudly_as_a_signing_key_and_as_a_trusted_key(tmp_path):
    export_private, export_public = generate_clinic_keypair(tmp_path / "export")
    bundle = signed_bundle(tmp_path / "b", None)
    with pytest.raises(SigningKeyError, match="EXPORT key"):
        sign_bundle(bundle, export_private)
    assert not (bundle / "manifest.sig").exists()
    with pytest.raises(SigningKeyError, match="EXPORT key"):
        load_trusted_keys([export_public])
    # Also inside a trusted folder: refused, never skipped.
    folder = tmp_path / "trusted"
    folder.mkdir()
    (folder / "clinic.pub").write_bytes(export_public.read_bytes())
    with pytest.raises(SigningKeyError, match="EXPORT key"):
        load_trusted_keys([folder])


def test_the_wrong_half_of_a_signing_pair_is_refused(tmp_path):
    private, public = generate_signing_keypair(tmp_path / "k")
    with pytest.raises(SigningKeyError, match="public signing key; a private"):
        load_signing_key(public)
    with pytest.raises(SigningKeyError, match="private signing key; a public"):
        load_trusted_keys([private])
    (tmp_path / "junk.pub").write_bytes(b"\x00" * 32)
    with pytest.raises(SigningKeyError):
        load_trusted_keys([tmp_path / "junk.pub"])


def test_trusted_keys_come_from_files_and_folders_and_a_missing_folder_holds_none(tmp_path):
    _, pub_a = generate_signing_keypair(tmp_path / "a")
    _, pub_b = generate_signing_keypair(tmp_path / "b")
    folder = tmp_path / "bundle-keys"
    folder.mkdir()
    (folder / "b.pub").write_bytes(pub_b.read_bytes())
    trusted = load_trusted_keys([pub_a, folder, tmp_path / "not-provisioned"])
    assert set(trusted) == {key_id(load_verify_key(pub_a)), key_id(load_verify_key(pub_b))}
    with pytest.raises(SigningKeyError, match="no public signing key file"):
        load_trusted_keys([tmp_path / "missing.pub"])


# ---- signing ---------------------------------------------------------------------------------


def test_a_signed_bundle_verifies_and_its_signature_is_the_documented_json(tmp_path, keys):
    private, public, trusted = keys
    bundle = signed_bundle(tmp_path / "b", private)
    document = json.loads((bundle / "manifest.sig").read_text())
    assert set(document) == {"algorithm", "key_id", "signature"}
    assert document["algorithm"] == "ed25519"
    assert document["key_id"] == key_id(load_verify_key(public))
    signature = base64.b64decode(document["signature"])
    from nacl.signing import VerifyKey

    VerifyKey(load_verify_key(public)).verify((bundle / MANIFEST_NAME).read_bytes(), signature)
    manifest = verify_signed_bundle(bundle, trusted)
    assert manifest.bundle_id == "tiny-test"


def test_a_corrupt_bundle_is_never_signed(tmp_path, keys):
    private, _, _ = keys
    bundle = signed_bundle(tmp_path / "b", None)
    data = bytearray((bundle / "model.tflite").read_bytes())
    data[100] ^= 1
    (bundle / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError):
        sign_bundle(bundle, private)
    assert not (bundle / "manifest.sig").exists()


# ---- refusals --------------------------------------------------------------------------------


def test_an_unsigned_bundle_is_refused(tmp_path, keys):
    bundle = signed_bundle(tmp_path / "b", None)
    with pytest.raises(BundleUnsignedError, match="not signed"):
        verify_signed_bundle(bundle, keys[2])


def test_a_bundle_signed_by_another_key_is_refused(tmp_path, keys):
    other_private, _, _ = make_keys(tmp_path / "other")
    bundle = signed_bundle(tmp_path / "b", other_private)
    with pytest.raises(BundleUntrustedKeyError, match="does not trust"):
        verify_signed_bundle(bundle, keys[2])


def test_with_no_trusted_key_nothing_verifies(tmp_path, keys):
    bundle = signed_bundle(tmp_path / "b", keys[0])
    with pytest.raises(BundleUntrustedKeyError, match="No signing key is trusted"):
        verify_signed_bundle(bundle, {})


def test_a_forged_key_id_does_not_help(tmp_path, keys):
    # Signed by another key but claiming the trusted key's id: the signature fails.
    other_private, _, _ = make_keys(tmp_path / "other")
    bundle = signed_bundle(tmp_path / "b", other_private)
    document = json.loads((bundle / "manifest.sig").read_text())
    document["key_id"] = next(iter(keys[2]))
    (bundle / "manifest.sig").write_text(json.dumps(document))
    with pytest.raises(BundleSignatureError, match="changed after it was signed"):
        verify_signed_bundle(bundle, keys[2])


@pytest.mark.parametrize("text", ["", "not json", '{"algorithm": "ed25519"}', "[1, 2]"])
def test_a_malformed_signature_file_is_refused(tmp_path, keys, text):
    bundle = signed_bundle(tmp_path / "b", keys[0])
    (bundle / "manifest.sig").write_text(text)
    with pytest.raises(BundleSignatureError, match="unreadable"):
        verify_signed_bundle(bundle, keys[2])


def test_one_byte_changed_in_the_manifest_is_refused_by_the_signature(tmp_path, keys):
    bundle = signed_bundle(tmp_path / "b", keys[0])
    text = (bundle / MANIFEST_NAME).read_bytes()
    (bundle / MANIFEST_NAME).write_bytes(text.replace(b'"tiny-test"', b'"tiny-tesT"', 1))
    with pytest.raises(BundleSignatureError, match="changed after it was signed"):
        verify_signed_bundle(bundle, keys[2])


def test_a_re_sealed_edit_of_the_threshold_is_refused_by_the_signature(tmp_path, keys):
    # decision_sha256 alone is a seal anyone can redo; the signature is not.
    bundle = signed_bundle(tmp_path / "b", keys[0])
    rewrite_manifest(bundle, {"calibration": {"temperature": 1.5, "referral_threshold": 0.9,
                                              "uncertainty_threshold": 0.5}})  # fmt: skip
    with pytest.raises(BundleSignatureError):
        verify_signed_bundle(bundle, keys[2])


def _files(bundle: Path) -> list[str]:
    return sorted(json.loads((bundle / MANIFEST_NAME).read_text())["files"])


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_one_byte_changed_in_any_file_is_refused(tmp_path, keys, where):
    source = adapted_bundle(tmp_path / "adapted", keys[0])  # has model, gradcam, head
    names = _files(source)
    assert {"model.tflite", "gradcam.tflite", "head.npz"} <= set(names)
    for name in names:
        bundle = tmp_path / f"{name}-{where}"
        shutil.copytree(source, bundle)
        data = bytearray((bundle / name).read_bytes())
        index = {"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]
        data[index] ^= 0x01
        (bundle / name).write_bytes(bytes(data))
        with pytest.raises(BundleChecksumError, match=re.escape(f"{name}: sha256 mismatch")):
            verify_signed_bundle(bundle, keys[2])


def test_a_truncated_file_is_refused(tmp_path, keys):
    bundle = signed_bundle(tmp_path / "b", keys[0])
    data = (bundle / "model.tflite").read_bytes()
    (bundle / "model.tflite").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleChecksumError, match=r"model\.tflite: truncated"):
        verify_signed_bundle(bundle, keys[2])
    bundle2 = signed_bundle(tmp_path / "b2", keys[0])
    (bundle2 / "gradcam.tflite").write_bytes(b"")
    with pytest.raises(BundleChecksumError, match=r"gradcam\.tflite: truncated"):
        verify_signed_bundle(bundle2, keys[2])


def test_a_missing_file_is_refused(tmp_path, keys):
    bundle = signed_bundle(tmp_path / "b", keys[0])
    (bundle / "gradcam.tflite").unlink()
    with pytest.raises(BundleError, match=r"gradcam\.tflite: missing"):
        verify_signed_bundle(bundle, keys[2])


def test_a_bundle_for_a_preprocessing_spec_this_software_does_not_run_is_refused(tmp_path, keys):
    bundle = signed_bundle(tmp_path / "b", None)
    preprocessing = json.loads((bundle / MANIFEST_NAME).read_text())["preprocessing"]
    for version in (5, 99):
        rewrite_manifest(bundle, {"preprocessing": {**preprocessing, "version": version}})
        sign_bundle_anyway(bundle, keys[0])
        with pytest.raises(BundlePreprocessingError, match=f"spec {version}|{version}"):
            verify_signed_bundle(bundle, keys[2])


def sign_bundle_anyway(bundle: Path, key: Path) -> None:
    """Sign without the signer's own checks (a clinic running an older or broken tool)."""
    from device.bundles.keys import load_signing_key
    from device.bundles.signing import signature_document

    document = signature_document((bundle / MANIFEST_NAME).read_bytes(), load_signing_key(key))
    (bundle / "manifest.sig").write_text(json.dumps(document))


# ---- adapted bundles -------------------------------------------------------------------------


def test_a_signed_adapted_bundle_verifies_and_names_its_site(tmp_path, keys):
    bundle = adapted_bundle(tmp_path / "adapted", keys[0])
    manifest = verify_signed_bundle(bundle, keys[2])
    assert manifest.adaptation is not None
    assert manifest.adaptation_label == "adapted for clinic-north, 2026-12-07"


def test_an_adapted_manifest_from_another_base_trunk_is_refused(tmp_path, keys):
    bundle = adapted_bundle(
        tmp_path / "adapted", keys[0], adaptation={"base_model_sha256": "ab" * 32}
    )
    with pytest.raises(BundleBaseMismatchError, match="another base model"):
        verify_signed_bundle(bundle, keys[2])
    assert issubclass(BundleBaseMismatchError, AdaptationError)


def test_an_adapted_manifest_moved_onto_another_trunk_is_refused(tmp_path, keys):
    # A signed adapted manifest beside another trunk's model.tflite: the file fails its sha256.
    bundle = adapted_bundle(tmp_path / "adapted", keys[0])
    other_trunk = bytearray((bundle / "model.tflite").read_bytes())
    other_trunk[-1] ^= 0x01
    (bundle / "model.tflite").write_bytes(bytes(other_trunk))
    with pytest.raises(BundleChecksumError, match=r"model\.tflite: sha256 mismatch"):
        verify_signed_bundle(bundle, keys[2])


def test_an_adapted_bundle_for_another_preprocessing_spec_is_refused(tmp_path, keys):
    bundle = adapted_bundle(
        tmp_path / "adapted", keys[0], adaptation={"base_preprocessing_sha256": "cd" * 32}
    )
    with pytest.raises(BundlePreprocessingError, match="another preprocessing spec"):
        verify_signed_bundle(bundle, keys[2])


def test_an_adapted_bundle_from_a_trunk_this_scanner_never_ran_is_refused(tmp_path, keys):
    bundle = adapted_bundle(tmp_path / "adapted", keys[0])
    trunk = json.loads((bundle / MANIFEST_NAME).read_text())["files"]["model.tflite"]["sha256"]
    with pytest.raises(BundleBaseMismatchError, match="never run"):
        verify_signed_bundle(bundle, keys[2], known_trunks={"0" * 64})
    assert verify_signed_bundle(bundle, keys[2], known_trunks={trunk}).adaptation is not None


# ---- the USB stick ---------------------------------------------------------------------------


def test_bundles_are_found_on_a_stick_and_described_without_trusting_them(tmp_path, keys):
    stick = tmp_path / "usb"
    signed_bundle(stick / "base", keys[0])
    (stick / "sites").mkdir()
    adapted_bundle(stick / "sites" / "north", None, base=signed_bundle(tmp_path / "b", None))
    (stick / ".Trash" / "old").mkdir(parents=True)
    (stick / ".Trash" / "old" / MANIFEST_NAME).write_text("{}")
    (stick / "photos").mkdir()
    found = find_bundles_on(stick)
    assert [p.relative_to(stick).as_posix() for p in found] == ["base", "sites/north"]
    assert describe_candidate(found[0]) == "tiny-test · signed"
    assert describe_candidate(found[1]) == (
        "tiny-test-clinic-north · adapted for clinic-north, 2026-12-07 · not signed"
    )
    assert find_bundles_on(tmp_path / "not-mounted") == []
    assert find_bundles_on(stick / "base") == [stick / "base"]
