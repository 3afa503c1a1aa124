"""The menu's model work: install the signed bundle found on the stick, or roll back.

The verification and the atomic swap are :class:`device.bundles.store.BundleStore`'s
(a bundle is refused unless the copy verifies, and the running one is kept); this
module only turns what it did, or why it refused, into the screen's words.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from device.app.menu_state import UsbOutcome
from device.errors import (
    BundleChecksumError,
    BundleError,
    BundleFileMissingError,
    BundleSignatureError,
    BundleStoreError,
    BundleUnsignedError,
    BundleUntrustedKeyError,
    DiskFullError,
    SigningKeyError,
    StorageError,
)

log = logging.getLogger(__name__)

# BundleStore.install's steps, as the busy screen says them.
STEP_TEXT: dict[str, str] = {
    "copying": "Copying the model from the stick…",
    "verifying": "Checking its signature and every file…",
    "placing": "Putting it in place…",
    "switching": "Switching to the new model…",
    "cleaning": "Tidying up…",
}
ASK_CLINIC = "Ask the clinic for a bundle signed with this scanner's key."


def _running(app: Any) -> str:
    bundle = getattr(getattr(app, "analyzer", None), "bundle", None)
    label = getattr(getattr(bundle, "manifest", None), "adaptation_label", None)
    bundle_id = getattr(bundle, "bundle_id", None)
    if bundle_id is None:
        return "The scanner's model is unchanged."
    return f"The running model is kept: {bundle_id}" + (f" ({label})." if label else ".")


def _refusal(exc: BundleError) -> tuple[str, str]:
    """(title, next step) for a bundle the store refused."""
    if isinstance(exc, BundleUnsignedError):
        return "Model refused: not signed", ASK_CLINIC
    if isinstance(exc, BundleUntrustedKeyError):
        return "Model refused: signed with an unknown key", ASK_CLINIC
    if isinstance(exc, (BundleChecksumError, BundleFileMissingError)):
        return "Model refused: a file is damaged or missing", (
            "Copy the bundle folder onto the stick again, whole."
        )
    if isinstance(exc, BundleSignatureError):
        return "Model refused: the signature does not match", (
            "The bundle was changed or damaged after signing. Copy it onto the stick again."
        )
    return "Model refused", "Copy the bundle onto the stick again, or ask the clinic for it."


def model_task(app: Any, task: str, folder: Path | None, stick: str) -> tuple[UsbOutcome, bool]:
    """Run "update-model" (from ``folder``) or "rollback-model" for ``app``.

    Returns:
        The outcome, and the id of the bundle now current when it changed (the app then
        reloads it), else None.
    """
    opener = getattr(app, "open_bundle_store", None)
    if opener is None:
        return UsbOutcome(task, False, "Model updates are not set up on this scanner",
                          next_step="Tell your supervisor.", stick=stick), None  # fmt: skip
    try:
        store = opener()
    except (SigningKeyError, BundleError, StorageError) as exc:
        log.error("bundle store not opened: %s", exc)
        return UsbOutcome(task, False, "Model updates are not set up on this scanner",
                          (str(exc),), next_step="Tell your supervisor.",
                          stick=stick), None  # fmt: skip
    if task == "rollback-model":
        return _rollback(app, store)
    assert folder is not None
    return _install(app, store, folder, stick)


def _rollback(app: Any, store: Any) -> tuple[UsbOutcome, str | None]:
    task = "rollback-model"
    app.usb_progress("Checking the previous model…")
    try:
        result = store.rollback()
    except BundleStoreError as exc:
        return UsbOutcome(task, False, "No earlier model to go back to", (str(exc),
                          _running(app))), None  # fmt: skip
    except BundleError as exc:
        return UsbOutcome(task, False, "The earlier model failed its check", (str(exc),
                          _running(app)), next_step="Tell your supervisor."), None  # fmt: skip
    return UsbOutcome(task, True, "Back to the previous model", (result.message,)), (
        result.current.bundle_id
    )


def _install(app: Any, store: Any, folder: Path, stick: str) -> tuple[UsbOutcome, str | None]:
    from device.bundles.usb import describe_candidate, find_bundles_on

    task = "update-model"
    found = find_bundles_on(folder)
    if not found:
        return UsbOutcome(
            task, False, "No model on this stick",
            ("A model is a folder holding manifest.json and manifest.sig.",),
            next_step="Copy the bundle folder the clinic signed onto the stick.", stick=stick,
        ), None  # fmt: skip
    source = found[0]
    about = describe_candidate(source)
    lines = [f"From the stick: {source.name} ({about})"]
    if len(found) > 1:
        lines.append(f"{len(found)} models are on the stick; the first was used. "
                     "Keep only one there to choose another.")  # fmt: skip
    if not getattr(store, "trusted_keys", None):
        return UsbOutcome(
            task, False, "Model refused: this scanner trusts no signing key",
            (*lines, _running(app)),
            next_step="Ask your supervisor to install the clinic's signing key "
            "(setup.sh --bundle-key signing.pub).", stick=stick,
        ), None  # fmt: skip

    def progress(step: str) -> None:
        app.usb_progress(STEP_TEXT.get(step, step))

    try:
        result = store.install(source, progress=progress)
    except BundleError as exc:
        log.error("bundle on the stick refused: %s", exc)
        title, step = _refusal(exc)
        return UsbOutcome(task, False, title, (*lines, str(exc), _running(app)),
                          next_step=step, stick=stick), None  # fmt: skip
    except DiskFullError as exc:
        return UsbOutcome(task, False, "Not enough space on the scanner for the model",
                          (*lines, str(exc), _running(app)),
                          next_step="Free space from the menu, then try again.",
                          stick=stick), None  # fmt: skip
    except StorageError as exc:
        return UsbOutcome(task, False, "The model could not be copied",
                          (*lines, str(exc), _running(app)),
                          next_step="Try again, or use another stick.",
                          stick=stick), None  # fmt: skip
    if not result.changed:
        return UsbOutcome(task, True, "This model is already running", (*lines, result.message),
                          stick=stick), None  # fmt: skip
    return UsbOutcome(task, True, "New model installed", (*lines, result.message),
                      next_step="Scan as usual; the result screen names the model.",
                      stick=stick), result.current.bundle_id  # fmt: skip
