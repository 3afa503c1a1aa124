"""Every screenshot in the docs, remade from the shipped bundle by scripted sessions.

The list is ``docs/screenshots.toml``: one ``[[session]]`` per run of the app, each with
the screenshots it feeds. A device session runs ``skinscan run --headless --backend sim
--screenshots`` with a script of button presses; a clinic session runs
``python -m clinic.docs_screens`` (the clinic app in headless chromium). Both run in a
subprocess, so this module imports neither pygame nor Flask.

A device session's keys:

- ``name``; ``kind = "device"`` (the default) or ``"clinic"``;
- ``script``: the buttons (``skinscan run --help`` lists the verbs);
- ``config``: TOML text for ``--config`` (e.g. ``[display]`` ``size = [480, 320]``);
- ``images``: what the simulated camera sees, in order: ``"ham10000:ISIC_0026449"`` (an
  image of the HAM10000 folder given with ``--ham10000``), ``"card:TEXT"`` (a patient
  card holding TEXT, photographed on skin); none: the simulator's drawn phantoms;
- ``before``: a script run first on the same data folder, without screenshots;
  ``damage``: then ``"image-byte"`` (one byte of one saved photo changed) or
  ``"truncate-db"`` (the scan database cut to 10,000 bytes);
- ``tmpfs_mib`` and ``leave_free_kib``: the data folder on a tmpfs of that size, filled
  until that much is free (needs root; skipped with a message otherwise);
- ``usb = true``: a folder stands for a plugged-in USB stick (``--usb``), and the data
  folder holds a clinic's public key made for the session, so the menu's Export to USB
  and Free space work;
- ``commands``: name -> a ``skinscan`` command run on the session's data folder after it
  (e.g. ``records-list = "records list"``); its output fills the docs' blocks
  ``<!-- generated: session-output session=NAME name=records-list -->``;
- ``shots``: target path -> selector. A selector is a glob on the screen's name (the
  PNG's name without its number, e.g. ``result-scan1-heatmap-saved``), optionally
  ``@N`` for the Nth match (1 = first, -1 = last) and ``A>B`` for the first B after the
  first A.

A clinic session's ``shots`` map target paths to the page names its scenario writes:
``scenario = "import"`` (the default, ``clinic.docs_screens``: ``import``, ``scan-page``,
``upload-result``, and any ``pages`` it is given, ``pages = ["worklist=/worklist"]``) or
``"casework"`` (``clinic.docs_casework``: ``clinic-worklist``, ``clinic-confirmed-cases``,
``clinic-sites``, ``clinic-scan-confirmed``).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import DocsError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


REGISTRY = Path("docs/screenshots.toml")
SESSION_TIMEOUT_S = 300
_DAMAGES = ("image-byte", "truncate-db")
# A clinic session's scenario -> the module that shoots it.
_CLINIC_SCENARIOS = {"import": "clinic.docs_screens", "casework": "clinic.docs_casework"}


@dataclass(frozen=True)
class Session:
    """One scripted run of the app, and the screenshots it feeds."""

    name: str
    shots: dict[str, str]
    kind: str = "device"
    script: str = ""
    config: str = ""
    images: tuple[str, ...] = ()
    before: str = ""
    damage: str = ""
    tmpfs_mib: int = 0
    leave_free_kib: int = 0
    pages: tuple[str, ...] = ()
    commands: dict[str, str] = field(default_factory=dict)
    usb: bool = False
    scenario: str = "import"

    @property
    def needs_ham10000(self) -> bool:
        return any(image.startswith("ham10000:") for image in self.images)


@dataclass
class Outcome:
    """What a run of :func:`make_screenshots` wrote, and what it could not make."""

    written: list[Path] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # "session/name" -> command output
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def load_registry(path: Path) -> list[Session]:
    """The sessions of a screenshot list; a malformed one raises DocsError naming it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DocsError(f"{path}: {exc}") from exc
    sessions = []
    for number, raw in enumerate(data.get("session", []), start=1):
        where = f"{path}: session {number} ({raw.get('name', 'no name')})"
        known = set(Session.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise DocsError(f"{where}: unknown keys {sorted(unknown)}")
        if not raw.get("name") or not isinstance(raw.get("shots"), dict) or not raw["shots"]:
            raise DocsError(f"{where}: needs a name and at least one shot")
        kind = raw.get("kind", "device")
        if kind not in ("device", "clinic"):
            raise DocsError(f"{where}: kind must be 'device' or 'clinic', not {kind!r}")
        if kind == "device" and not raw.get("script"):
            raise DocsError(f"{where}: a device session needs a script")
        if raw.get("scenario", "import") not in _CLINIC_SCENARIOS:
            raise DocsError(f"{where}: scenario must be one of {sorted(_CLINIC_SCENARIOS)}")
        if raw.get("damage", "") not in ("", *_DAMAGES):
            raise DocsError(f"{where}: damage must be one of {_DAMAGES}")
        if not all(isinstance(v, str) for v in raw.get("commands", {}).values()):
            raise DocsError(f"{where}: commands must map names to skinscan commands")
        values = {
            **raw,
            "images": tuple(raw.get("images", ())),
            "pages": tuple(raw.get("pages", ())),
        }
        sessions.append(Session(**values))
    if not sessions:
        raise DocsError(f"{path}: no [[session]] entries")
    return sessions


def pick(names: Sequence[str], selector: str) -> str | None:
    """The screen name a selector picks from the session's screens, in order; None if none."""
    after, _, rest = selector.rpartition(">")
    pattern, _, nth = rest.partition("@")
    start = 0
    if after:
        first = next((i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, after)), None)
        if first is None:
            return None
        start = first + 1
    matches = [n for n in names[start:] if fnmatch.fnmatchcase(n, pattern)]
    index = int(nth) if nth else 1
    if not matches or index == 0 or abs(index) > len(matches):
        return None
    return matches[index - 1 if index > 0 else index]


def screen_names(folder: Path) -> list[tuple[str, Path]]:
    """(name, file) of the PNGs a headless run wrote, in the order they were shown."""
    found = []
    for path in sorted(folder.glob("*.png")):
        match = re.match(r"\d+-(.+)\.png$", path.name)
        if match:
            found.append((match.group(1), path))
    return found


def photographed_card(text: str, background: Path | None, out: Path) -> Path:
    """A patient card holding ``text``, as the dermoscope sees it on skin (1024x768 PNG)."""
    import cv2
    import numpy as np

    frame = None
    if background is not None:
        frame = cv2.imread(str(background), cv2.IMREAD_COLOR)
    if frame is None:  # plain skin tone, with a little texture
        frame = np.full((768, 1024, 3), (150, 165, 215), np.uint8)
    frame = cv2.resize(frame, (1024, 768), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    code = cv2.QRCodeEncoder.create().encode(text)
    code = np.pad(code, 4, constant_values=255)
    code = cv2.resize(code, None, fx=6, fy=6, interpolation=cv2.INTER_NEAREST)
    paper = (40.0 + code.astype(np.float32) * (200.0 / 255.0))[..., None] * [0.92, 0.97, 1.0]
    h, w = code.shape
    top, left = (768 - h) // 2, (1024 - w) // 2
    frame[top : top + h, left : left + w] = paper
    turn = cv2.getRotationMatrix2D((512, 384), 12, 1.0)
    frame = cv2.warpAffine(frame, turn, (1024, 768), borderMode=cv2.BORDER_REFLECT)
    frame = cv2.GaussianBlur(frame, (0, 0), 1.2)
    if not cv2.imwrite(str(out), np.clip(frame, 0, 255).astype(np.uint8)):
        raise DocsError(f"cannot write the card image {out}")
    return out


def _camera_folder(session: Session, ham10000: Path | None, folder: Path) -> Path | None:
    if not session.images:
        return None
    folder.mkdir(parents=True)
    first_photo = None
    if ham10000 is not None:
        first_photo = next(
            (
                ham10000 / "images" / f"{i.split(':', 1)[1]}.jpg"
                for i in session.images
                if i.startswith("ham10000:")
            ),
            None,
        )
    for number, image in enumerate(session.images):
        kind, _, value = image.partition(":")
        if kind == "ham10000" and ham10000 is not None:
            source = ham10000 / "images" / f"{value}.jpg"
            if not source.is_file():
                raise DocsError(f"session {session.name}: no HAM10000 image {source}")
            shutil.copy(source, folder / f"{number:02d}-{value}.jpg")
        elif kind == "card":
            photographed_card(value, first_photo, folder / f"{number:02d}-card.png")
        else:
            raise DocsError(
                f"session {session.name}: unknown image {image!r} (ham10000:ID, card:TEXT)"
            )
    return folder


@dataclass(frozen=True)
class _Run:
    """Where one session runs: the checkout whose code runs, its bundle, photos and folders."""

    session: Session
    code: Path
    bundle: Path
    ham10000: Path | None
    work: Path
    outputs: dict[str, str]

    def python(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> Any:
        """``python -m ARGS`` in the checkout ``code`` (so its own code runs), captured."""
        return subprocess.run(
            [sys.executable, "-m", *args],
            env=dict(env) if env is not None else None,
            cwd=self.code,
            capture_output=True,
            text=True,
            timeout=SESSION_TIMEOUT_S,
            check=False,
        )

    def device_env(self, data: Path) -> dict[str, str]:
        env = {**os.environ, "SKINSCAN_DATA_DIR": str(data), "SDL_VIDEODRIVER": "dummy"}
        env.pop("SKINSCAN_KEY_FILE", None)
        env.pop("SKINSCAN_BACKEND", None)
        return env


def _run_app(run: _Run, script: str, data: Path, shots: Path | None, camera: Path | None) -> None:
    config = run.work / "config.toml"
    config.write_text(run.session.config, encoding="utf-8")
    args = ["device.cli", "run", "--headless", "--backend", "sim", "--config", str(config)]
    args += ["--bundle", str(run.bundle), "--script", script]
    if shots is not None:
        args += ["--screenshots", str(shots)]
    if camera is not None:
        args += ["--images", str(camera)]
    if run.session.usb:
        args += ["--usb", str(_usb_stick(run, data))]
    done = run.python(args, run.device_env(data))
    if done.returncode != 0:
        raise DocsError(f"session {run.session.name}: skinscan run failed: {done.stderr[-800:]}")


def _usb_stick(run: _Run, data: Path) -> Path:
    """The folder standing for the session's USB stick, and a clinic key in ``data``."""
    from device.records.export import generate_clinic_keypair

    stick = run.work / "usb" / "KINGSTON"
    if not stick.is_dir():
        stick.mkdir(parents=True)
        _private, public = generate_clinic_keypair(run.work / "clinic-keys")
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(public, data / "clinic.pub")
    return stick


def _damage(kind: str, data: Path) -> None:
    if kind == "image-byte":
        photos = sorted((data / "images").glob("*.image"))
        if not photos:
            raise DocsError("damage image-byte: the first run saved no photo")
        raw = bytearray(photos[0].read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        photos[0].write_bytes(bytes(raw))
    elif kind == "truncate-db":
        with open(data / "scans.db", "r+b") as handle:
            handle.truncate(10_000)


def _fill(folder: Path, leave_free_kib: int) -> None:
    stat = os.statvfs(folder)
    filler = max(0, stat.f_bavail * stat.f_frsize - leave_free_kib * 1024)
    chunk = b"\0" * (1 << 20)
    with open(folder / "filler.bin", "wb") as handle:
        while filler > 0:
            handle.write(chunk[: min(len(chunk), filler)])
            filler -= min(len(chunk), filler)


def _command_output(run: _Run, command: str, data: Path) -> str:
    done = run.python(["device.cli", *command.split()], run.device_env(data))
    if done.returncode != 0:
        raise DocsError(
            f"session {run.session.name}: skinscan {command} failed: {done.stderr[-800:]}"
        )
    return done.stdout


def _device_session(run: _Run) -> list[tuple[str, Path]]:
    session = run.session
    camera = _camera_folder(session, run.ham10000, run.work / "camera")
    data_root = run.work / "data-root"
    data_root.mkdir()
    mounted = False
    if session.tmpfs_mib:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={session.tmpfs_mib}m", "tmpfs", str(data_root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise _Skip(f"needs a {session.tmpfs_mib} MiB tmpfs (root): {done.stderr.strip()}")
        mounted = True
    try:
        data = data_root / "data"
        if session.before:
            _run_app(run, session.before, data, None, camera)
            if camera is not None:  # the first run used its images up; give them again
                shutil.rmtree(camera)
                camera = _camera_folder(session, run.ham10000, run.work / "camera")
        if session.damage:
            _damage(session.damage, data)
        if session.leave_free_kib:
            data.mkdir(exist_ok=True)
            _fill(data_root, session.leave_free_kib)
        shots = run.work / "shots"
        _run_app(run, session.script, data, shots, camera)
        for name, command in session.commands.items():
            run.outputs[f"{session.name}/{name}"] = _command_output(run, command, data)
        kept = run.work / "kept"  # off the tmpfs before it is unmounted
        shutil.copytree(shots, kept)
        return screen_names(kept)
    finally:
        if mounted:
            subprocess.run(["umount", str(data_root)], check=False)


def _clinic_session(run: _Run) -> list[tuple[str, Path]]:
    out = run.work / "clinic-shots"
    module = _CLINIC_SCENARIOS[run.session.scenario]
    args = [module, "--out", str(out), "--bundle", str(run.bundle)]
    photos = [i.split(":", 1)[1] for i in run.session.images if i.startswith("ham10000:")]
    if run.ham10000 is not None and photos:
        args += ["--ham10000", str(run.ham10000), *[f"--image={p}" for p in photos]]
    args += [f"--page={page}" for page in run.session.pages]
    done = run.python(args)
    if done.returncode == 3:
        raise _Skip(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no browser")
    if done.returncode != 0:
        raise DocsError(
            f"session {run.session.name}: clinic screenshots failed: {done.stderr[-800:]}"
        )
    return [(p.stem, p) for p in sorted(out.glob("*.png"))]


class _Skip(Exception):
    """A session this machine cannot run (no root for a tmpfs, no browser, no HAM10000)."""


def run_session(
    session: Session,
    root: Path,
    bundle: Path,
    ham10000: Path | None,
    outcome: Outcome,
    code: Path | None = None,
) -> None:
    """Run one session with the code of ``code`` (default ``root``); its shots go under ``root``."""
    if session.needs_ham10000 and ham10000 is None:
        outcome.skipped.append(f"{session.name}: needs --ham10000 (its images are HAM10000 photos)")
        return
    with tempfile.TemporaryDirectory(prefix=f"skinscan-docs-{session.name}-") as tmp:
        checkout = (code or root).resolve()
        run = _Run(session, checkout, bundle.resolve(), ham10000, Path(tmp), outcome.outputs)
        try:
            runner = _clinic_session if session.kind == "clinic" else _device_session
            screens = runner(run)
        except _Skip as why:
            outcome.skipped.append(f"{session.name}: {why}")
            return
        except (DocsError, subprocess.TimeoutExpired, OSError) as exc:
            outcome.failed.append(f"{session.name}: {exc}")
            return
        names = [name for name, _ in screens]
        files = dict(screens)
        chosen = {target: pick(names, selector) for target, selector in session.shots.items()}
        missing = [t for t, name in chosen.items() if name is None]
        if missing:
            # The script no longer walks the flow it was written for: write none of its
            # pictures (nor its command output) rather than a wrong one.
            for key in [k for k in outcome.outputs if k.startswith(f"{session.name}/")]:
                del outcome.outputs[key]
            outcome.failed += [
                f"{session.name}: no screen matches {session.shots[t]!r} for {t}; nothing of "
                f"this session was written (its screens: {', '.join(names)})"
                for t in missing
            ]
            return
        for target, name in chosen.items():
            destination = root / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(files[name], destination)
            outcome.written.append(destination)


def make_screenshots(
    root: Path,
    bundle: Path,
    ham10000: Path | None,
    only: Sequence[str] = (),
    registry: Path | None = None,
    code: Path | None = None,
) -> Outcome:
    """Run every session of the registry (or those named in ``only``) and write their shots.

    The sessions run the code of the checkout ``code`` (default: ``root``) and write under
    ``root``."""
    sessions = load_registry(registry or root / REGISTRY)
    unknown = set(only) - {s.name for s in sessions}
    if unknown:
        raise DocsError(f"no screenshot session named {sorted(unknown)}")
    outcome = Outcome()
    for session in sessions:
        if only and session.name not in only:
            continue
        print(f"skinscan docs: screenshots of session {session.name} ...", file=sys.stderr)
        run_session(session, root, bundle, ham10000, outcome, code)
    return outcome


# Folders of our own screens; pictures elsewhere (charts under training/reports/) are
# measurements, made by the command their report names.
SCREEN_FOLDERS = ("docs", "clinic/docs")
_PICTURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")


def measurements(registry: Path) -> dict[str, str]:
    """The registry's ``[measurements]``: charts of a measurement (not screens), each with the
    command that makes it; ``skinscan docs build`` does not remake them."""
    data = tomllib.loads(registry.read_text(encoding="utf-8"))
    table = data.get("measurements", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
        raise DocsError(
            f"{registry}: [measurements] maps picture paths to the command that makes each"
        )
    return table


def unmade_pictures(root: Path, pages: Sequence[Path]) -> list[str]:
    """Pictures the pages show that are missing, or that lie in a screen folder and neither
    a session of the registry makes nor its ``[measurements]`` list; one line each."""
    registry = root / REGISTRY
    made = set()
    if registry.exists():
        made = {(root / t).resolve() for s in load_registry(registry) for t in s.shots}
        made |= {(root / t).resolve() for t in measurements(registry)}
    folders = [(root / f).resolve() for f in SCREEN_FOLDERS]
    problems = []
    for page in pages:
        rel = page.relative_to(root)
        for link in _PICTURE.findall(page.read_text(encoding="utf-8")):
            path = (page.parent / link).resolve()
            if not path.is_file():
                problems.append(f"{rel}: shows a missing picture {link}")
            elif path not in made and any(f in path.parents for f in folders):
                problems.append(
                    f"{rel}: {link} is made by no session of {REGISTRY} (a chart of a "
                    "measurement: list it under [measurements] with its command)"
                )
    return problems
