"""Serving the clinic app with waitress, in the foreground or in a background thread."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


def waitress_options(trusted_proxies: int) -> dict[str, Any]:
    """waitress settings for an app that believes ``trusted_proxies`` proxies.

    waitress removes ``X-Forwarded-*`` headers it was not told to trust, so the
    app's ProxyFix would never see them. With ``trusted_proxies`` > 0 the headers
    are passed on and ProxyFix alone decides which entry is the client.
    """
    return {"clear_untrusted_proxy_headers": False} if trusted_proxies > 0 else {}


class BackgroundServer:
    """The app served by waitress from a daemon thread, for tests and benchmarks.

    Args:
        app: the WSGI app.
        host: address to bind (default loopback only).
        port: port; 0 picks a free one.
        threads: waitress worker threads.
        options: further waitress settings (e.g. :func:`waitress_options`).

    Attributes:
        url: the server's base URL, e.g. ``http://127.0.0.1:40123``.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 4,
        **options: Any,
    ) -> None:
        from waitress.server import create_server

        self._server = create_server(
            app, host=host, port=port, threads=threads, ident="skinscan", **options
        )
        self.port = int(self._server.effective_port)
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._run, name="waitress", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run()
        except OSError as exc:  # the socket closed under the loop at shutdown
            log.debug("waitress loop ended: %s", exc)

    def start(self) -> BackgroundServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Let the requests in progress finish, then close the server and end its loop."""
        # Workers first: a worker finishing a request pokes the loop's trigger, which
        # must still be open then.
        self._server.task_dispatcher.shutdown(timeout=10)
        self._server.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
