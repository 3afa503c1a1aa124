"""Opening what the app needs, and closing it: the screen, the model bundle, the camera
(reopened when it is lost) and the record store's start-up notices.
"""

from __future__ import annotations

import logging
import time

from device.app.controller import view
from device.app.events import BundleReady, CameraNotice, CameraReady, Event, Failed, Notice
from device.app.store_events import notice_event
from device.errors import CameraError, SkinScanError
from device.ui.render import Renderer

log = logging.getLogger(__name__)

# The notice kind of "the installed bundle failed, an earlier one runs" (error_flow.NOTICE_TEXT).
BUNDLE_FALLBACK = "bundle_fallback"


class Startup:
    """Start-up and the bundle and camera, for :class:`device.app.runner.App`.

    A mixin: the App sets the attributes (camera, display, store, state...) and
    provides ``dispatch`` and ``present``.
    """

    def start(self) -> None:
        """Open the screen, load the bundle, open the camera, show the first screen, READY=1."""
        self.display.open()
        self.renderer = Renderer(self.display.size, getattr(self.buttons, "labels", {}))
        self.screen = view(self.state)
        self.present()
        self._load_bundle(initial=True)
        self._try_camera(initial=True)
        for notice in getattr(self.store, "notices", []):
            self.dispatch(notice_event(notice, self.store))
        self.present()
        status = "scanning" if self.state.mode == "preview" else f"showing {self.state.mode}"
        self.notifier.ready(status)
        log.info("SkinScan ready (%s)", status)

    def close(self) -> None:
        """Release camera, buttons, record store and screen; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.notifier.stopping()
        for name, part in (
            ("camera", self.camera),
            ("buttons", self.buttons),
            ("record store", self.store),
            ("battery", self.power),
            ("display", self.display),
        ):
            try:
                part.close()
            except Exception as exc:  # one failing close must not keep the rest open
                log.warning("closing the %s failed: %s", name, exc)
        log.info("SkinScan closed")

    def _load_bundle(self, initial: bool = False) -> Event | None:
        try:
            self.analyzer = self.load_analyzer()
        except Exception as exc:  # any failure to load is shown on screen, never raised
            log.error(
                "model bundle not loaded: %s", exc, exc_info=not isinstance(exc, SkinScanError)
            )
            self.analyzer = None
            event: Event = Failed("bundle", str(exc) or type(exc).__name__)
        else:
            log.info("model bundle loaded: %s", getattr(self.analyzer.bundle, "bundle_id", "?"))
            event = BundleReady()
        # The loader says when it fell back (the installed bundle failed: the previous runs).
        take = getattr(self.load_analyzer, "take_notices", None)
        found = take() if take is not None else []
        notices = [Notice(" ".join(found), kind=BUNDLE_FALLBACK)] if found else []
        if initial:
            for each in (event, *notices):
                self.dispatch(each)
            return None
        for notice in notices:
            self.dispatch(notice)
        return event

    def _try_camera(self, initial: bool = False) -> None:
        if self.camera_open:
            return
        now = time.monotonic()
        if not initial and now < self._next_camera_try:
            return
        try:
            self.camera.open()
        except CameraError as exc:
            self._next_camera_try = now + self.camera_retry_s
            if initial or self.state.camera_ok:
                log.error("camera: %s", exc)
                self.dispatch(Failed("camera", str(exc)))
            return
        self.camera_open = True
        self.preview.reset()
        if not initial or not self.state.camera_ok:
            log.info("camera ready: %s", getattr(self.camera, "name", "camera"))
        self.dispatch(CameraReady())

    def _camera_lost(self, exc: Exception) -> None:
        log.error("camera lost: %s", exc)
        self.camera_open = False
        try:
            self.camera.close()
        except Exception as close_exc:
            log.warning("closing the lost camera failed: %s", close_exc)
        self._next_camera_try = time.monotonic() + self.camera_retry_s
        self.dispatch(Failed("camera", str(exc)))

    def _camera_notices(self) -> None:
        """Show what the camera skipped (the simulator's unreadable image files)."""
        take = getattr(self.camera, "take_notices", None)
        notices = take() if take is not None else []
        if notices:
            self.dispatch(CameraNotice(" · ".join(notices)))
