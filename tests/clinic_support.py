"""Helpers for the clinic web app tests: keys, exports, images, a logged-in client."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.phantoms import make_phantom
from device.records.export import export_records, generate_clinic_keypair, load_public_key
from device.records.testing import make_record

PASSWORD = "correct horse battery"
PATIENT = "SKS-000142-7F3Q"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_keys(folder: Path) -> tuple[Path, Path]:
    """A clinic key pair under ``folder``: (private key file, public key file)."""
    return generate_clinic_keypair(folder)


def make_export(
    out: Path, public_key_file: Path, records: list[Any] | None = None, **kwargs: Any
) -> list[Path]:
    """Seal ``records`` (default: three of one patient) to the key; returns the part files."""
    if records is None:
        records = [
            make_record(i, size=48, patient_ref=PATIENT, body_site="back") for i in (1, 2, 3)
        ]
    result = export_records(
        records, out, load_public_key(public_key_file), device_id="dev-7", **kwargs
    )
    return result.files


def make_app(data_dir: Path, private_key_file: Path, analysis: Any, **settings: Any) -> Any:
    """A clinic app over ``data_dir`` with the account ``alice`` (password :data:`PASSWORD`).

    The caller closes ``app.extensions["skinscan_clinic"].store``.
    """
    from clinic.app import ClinicSettings, create_app
    from clinic.auth import hash_password

    app = create_app(
        ClinicSettings(data_dir=data_dir, clinic_key=private_key_file, **settings),
        analysis=analysis,
    )
    app.extensions["skinscan_clinic"].store.add_user("alice", hash_password(PASSWORD))
    return app


def encode(image: np.ndarray, ext: str = ".jpg") -> bytes:
    """An RGB image as JPEG or PNG bytes."""
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]))
    assert ok
    return buf.tobytes()


def lesion_jpeg(seed: int = 5) -> bytes:
    """A phantom lesion photo (600x450) that passes the quality gate."""
    return encode(make_phantom(seed, size=(450, 600)).image)


def png_of_size(width: int, height: int) -> bytes:
    """A real greyscale PNG of ``width`` x ``height`` black pixels (deflate keeps it small)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row
    stream = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) says ``width`` x ``height``."""
    data = bytearray(lesion_jpeg(5))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def csrf(client: Any, path: str = "/login") -> str:
    """The CSRF token of the form on ``path``."""
    page = client.get(path)
    found = CSRF_RE.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def login(client: Any, username: str = "alice", password: str = PASSWORD) -> Any:
    """Log in through the form; returns the response."""
    token = csrf(client)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def upload(client: Any, data: bytes, name: str = "lesion.jpg", **fields: str) -> Any:
    """POST an image to /upload with a valid CSRF token."""
    token = csrf(client, "/upload")
    form = {"csrf_token": token, "image": (io.BytesIO(data), name), **fields}
    return client.post("/upload", data=form, content_type="multipart/form-data")


def import_files(client: Any, files: list[tuple[str, bytes]]) -> Any:
    """POST export parts to /import with a valid CSRF token."""
    token = csrf(client, "/import")
    form: dict[str, Any] = {"csrf_token": token}
    form["export"] = [(io.BytesIO(data), name) for name, data in files]
    return client.post("/import", data=form, content_type="multipart/form-data")
