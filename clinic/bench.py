"""``skinscan bench serve``: upload-to-result latency and scan-page throughput.

Everything runs on this machine: a fresh clinic data folder in a temporary
directory, the app served by waitress on 127.0.0.1 (a free port), and HTTP
clients in threads that log in through the form like a browser. Two figures:

* **upload to result**: one client POSTs a phantom lesion JPEG (the device's
  1024x768 still size) to ``/upload`` and follows the redirect until the
  result page has arrived; median and p95 over ``--uploads`` uploads.
* **scan page**: ``--clients`` concurrent clients GET one scan's result page
  (the HTML; ``--with-images`` also fetches its photo and heatmap), bounded
  by ``--requests`` requests in all; requests per second.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import tempfile
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
_PASSWORD = secrets.token_urlsafe(16)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--uploads", type=int, default=30, help="uploads timed (default 30)")
    parser.add_argument(
        "--requests", type=int, default=400, help="scan-page requests in all (default 400)"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (default 4)")
    parser.add_argument(
        "--with-images", action="store_true", help="each page view also fetches its two images"
    )
    parser.add_argument("--bundle", type=Path, metavar="DIR", help="model bundle")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")


class Client:
    """A logged-in HTTP client with its own cookies, like one browser tab."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        token = self.csrf("/login")
        self.post_form("/login", {"username": username, "password": password, "csrf_token": token})
        if "Log out" not in self.get("/patients"):
            raise RuntimeError("the benchmark client could not log in")

    def get(self, path: str) -> str:
        """GET a page and return its text."""
        with self.opener.open(self.base + path, timeout=60) as response:
            return response.read().decode()

    def get_bytes(self, path: str) -> bytes:
        """GET raw bytes (an image)."""
        with self.opener.open(self.base + path, timeout=60) as response:
            return response.read()

    def csrf(self, path: str) -> str:
        """The CSRF token of the form on ``path``."""
        found = _CSRF_RE.search(self.get(path))
        if not found:
            raise RuntimeError(f"no CSRF token on {path}")
        return found.group(1)

    def post_form(self, path: str, fields: dict[str, str]) -> str:
        """POST a urlencoded form; redirects are followed."""
        from urllib.parse import urlencode

        request = urllib.request.Request(self.base + path, data=urlencode(fields).encode())
        with self.opener.open(request, timeout=60) as response:
            return response.read().decode()

    def post_file(
        self, path: str, fields: dict[str, str], name: str, data: bytes
    ) -> tuple[str, str]:
        """POST multipart/form-data with one file; returns (final URL, page text)."""
        boundary = secrets.token_hex(16)
        parts = []
        for key, value in fields.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
            parts.append(f"{head}{value}\r\n".encode())
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="upload.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        request = urllib.request.Request(
            self.base + path,
            data=b"".join(parts),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with self.opener.open(request, timeout=120) as response:
            return response.geturl(), response.read().decode()


def _phantom_jpegs(count: int) -> list[bytes]:
    import cv2

    from device.phantoms import make_phantom

    out = []
    for seed in range(count):
        image = make_phantom(100 + seed, size=(768, 1024)).image
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if ok:
            out.append(buf.tobytes())
    return out


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def run_bench(
    *,
    uploads: int = 30,
    requests: int = 400,
    clients: int = 4,
    threads: int = 4,
    with_images: bool = False,
    bundle_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark against a loopback server and return its figures."""
    from clinic.app import ClinicSettings, create_app
    from clinic.auth import add_user
    from clinic.server import BackgroundServer
    from device.records.export import generate_clinic_keypair

    if uploads < 1 or requests < 1 or clients < 1:
        raise ValueError("--uploads, --requests and --clients must be at least 1")
    with tempfile.TemporaryDirectory(prefix="skinscan-bench-serve-") as tmp:
        root = Path(tmp)
        private, _ = generate_clinic_keypair(root / "keys")
        settings = ClinicSettings(
            data_dir=root / "clinic", clinic_key=private, bundle_dir=bundle_dir
        )
        app = create_app(settings)
        store = app.extensions["skinscan_clinic"].store
        add_user(store, "bench", _PASSWORD)
        images = _phantom_jpegs(min(uploads, 20))
        with BackgroundServer(app, threads=threads) as server:
            client = Client(server.url, "bench", _PASSWORD)
            latencies: list[float] = []
            retakes = 0
            scan_path = ""
            client.post_file(  # warm-up: first-use costs (imports, caches) are not counted
                "/upload", {"csrf_token": client.csrf("/upload")}, "image", images[0]
            )
            for i in range(uploads):
                token = client.csrf("/upload")
                started = time.perf_counter()
                url, page = client.post_file(
                    "/upload", {"csrf_token": token}, "image", images[i % len(images)]
                )
                elapsed = time.perf_counter() - started
                if "/scans/" in url and "Screening aid" in page:
                    latencies.append(elapsed)
                    scan_path = url[len(server.url) :]
                else:
                    retakes += 1
            if not scan_path:
                raise RuntimeError("no upload produced a result page")

            per_client = [
                requests // clients + (1 if i < requests % clients else 0) for i in range(clients)
            ]
            sessions = [Client(server.url, "bench", _PASSWORD) for _ in range(clients)]
            errors: list[str] = []
            page_times: list[float] = []
            lock = threading.Lock()
            scan_id = scan_path.rsplit("/", 1)[1]

            def worker(session: Client, count: int) -> None:
                for _ in range(count):
                    started = time.perf_counter()
                    try:
                        text = session.get(scan_path)
                        if with_images:
                            session.get_bytes(f"/scans/{scan_id}/photo.png")
                            session.get_bytes(f"/scans/{scan_id}/heatmap.png")
                        ok = "Screening aid" in text
                    except OSError as exc:
                        ok, text = False, str(exc)
                    with lock:
                        page_times.append(time.perf_counter() - started)
                        if not ok:
                            errors.append(text[:200])

            pool = [
                threading.Thread(target=worker, args=(s, n), daemon=True)
                for s, n in zip(sessions, per_client, strict=True)
            ]
            started = time.perf_counter()
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            wall = time.perf_counter() - started
    return {
        "uploads": len(latencies),
        "retakes": retakes,
        "upload_to_result_median_ms": 1000 * _percentile(latencies, 50),
        "upload_to_result_p95_ms": 1000 * _percentile(latencies, 95),
        "upload_image": "phantom JPEG 1024x768",
        "clients": clients,
        "page_requests": len(page_times),
        "page_errors": len(errors),
        "with_images": with_images,
        "scan_page_requests_per_s": len(page_times) / wall if wall > 0 else float("nan"),
        "scan_page_median_ms": 1000 * _percentile(page_times, 50),
        "scan_page_p95_ms": 1000 * _percentile(page_times, 95),
        "waitress_threads": threads,
    }


def main(args: argparse.Namespace) -> int:
    """Run ``skinscan bench serve`` and print the figures."""
    figures = run_bench(
        uploads=args.uploads,
        requests=args.requests,
        clients=args.clients,
        threads=args.threads,
        with_images=args.with_images,
        bundle_dir=args.bundle,
    )
    what = "page + photo + heatmap" if figures["with_images"] else "page HTML"
    print(
        f"upload to result ({figures['upload_image']}, {figures['uploads']} uploads): "
        f"median {figures['upload_to_result_median_ms']:.1f} ms, "
        f"p95 {figures['upload_to_result_p95_ms']:.1f} ms"
    )
    print(
        f"scan page ({what}), {figures['clients']} concurrent clients, "
        f"{figures['page_requests']} requests: {figures['scan_page_requests_per_s']:.1f} req/s "
        f"(median {figures['scan_page_median_ms']:.1f} ms, "
        f"p95 {figures['scan_page_p95_ms']:.1f} ms, "
        f"{figures['page_errors']} errors)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 1 if figures["page_errors"] else 0
