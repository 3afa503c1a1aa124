"""``skinscan docs``: remake the docs' figure tables and screenshots from the shipped bundle.

``skinscan docs build`` rewrites every generated block (``<!-- generated: ... -->``) in
the README and the docs from the bundle's manifest and model card, then remakes every
screenshot listed in ``docs/screenshots.toml`` with scripted sessions of the device
simulator and the clinic app (headless chromium). ``skinscan docs build --check`` (or
``skinscan docs check``) changes nothing and takes about a second: it exits 1 when a
generated block differs from what the bundle says, a current document calls another
bundle "shipped" or has a command overwrite it (``conversion/docs_claims.py``), or a page
shows a screenshot that no session of ``docs/screenshots.toml`` makes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from conversion.docs_blocks import Bundle, refresh, stale_blocks
from conversion.docs_claims import CURRENT, HISTORY, check_tree, documents

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = Path("device/models/default")


def configure(parser: argparse.ArgumentParser) -> None:
    """Register ``skinscan docs``'s options."""
    parser.add_argument(
        "action",
        choices=("build", "check"),
        help="build: rewrite tables and remake screenshots; check: only say what is stale",
    )
    parser.add_argument(
        "--check", action="store_true", help="with build: change nothing, exit 1 if stale"
    )
    parser.add_argument(
        "--no-screenshots", action="store_true", help="build: rewrite the tables only"
    )
    parser.add_argument(
        "--session",
        action="append",
        default=[],
        metavar="NAME",
        help="build: remake only this screenshot session (repeatable; docs/screenshots.toml)",
    )
    parser.add_argument(
        "--ham10000",
        metavar="DIR",
        help="HAM10000 folder for the screenshots that show its photos "
        "(default: $HAM10000; without it those sessions are skipped and listed)",
    )
    parser.add_argument(
        "--root", metavar="DIR", help="repository to work on (default: this checkout)"
    )
    parser.add_argument(
        "--bundle", metavar="DIR", help="the bundle to quote (default: ROOT/device/models/default)"
    )


def pages(root: Path) -> list[Path]:
    """Every Markdown page that may hold a generated block."""
    return documents(root, (*CURRENT, *HISTORY))


def check(root: Path, bundle: Bundle) -> list[str]:
    """Every stale generated block, stale 'shipped' claim and unmade picture under ``root``."""
    from conversion.docs_shots import unmade_pictures

    problems: list[str] = []
    for path in pages(root):
        rel = str(path.relative_to(root))
        problems += stale_blocks(path.read_text(encoding="utf-8"), bundle, rel)
    problems += [str(stale) for stale in check_tree(root, bundle.manifest)]
    problems += unmade_pictures(root, documents(root, CURRENT))
    return problems


def rewrite_blocks(root: Path, bundle: Bundle) -> list[Path]:
    """Rewrite every generated block under ``root``; returns the pages that changed."""
    changed = []
    for path in pages(root):
        text = path.read_text(encoding="utf-8")
        new = refresh(text, bundle, str(path.relative_to(root)))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(args: argparse.Namespace) -> int:
    """Check or rebuild the docs; returns 1 when something is stale or was not remade."""
    import os

    root = Path(args.root).resolve() if args.root else ROOT
    bundle = Bundle.load(Path(args.bundle) if args.bundle else root / SHIPPED, root)
    if args.action == "check" or args.check:
        problems = check(root, bundle)
        for line in problems:
            print(line)
        verdict = f"{len(problems)} stale item(s)" if problems else "docs are fresh"
        print(f"skinscan docs: {verdict} (bundle {bundle.bundle_id})", file=sys.stderr)
        return 1 if problems else 0

    changed = rewrite_blocks(root, bundle)
    for path in changed:
        print(f"rewrote generated blocks in {path.relative_to(root)}", file=sys.stderr)
    report: dict[str, list[str]] = {"blocks": [str(p.relative_to(root)) for p in changed]}
    if not args.no_screenshots:
        from conversion.docs_shots import make_screenshots

        ham = args.ham10000 or os.environ.get("HAM10000")
        outcome = make_screenshots(root, bundle.folder, Path(ham) if ham else None, args.session)
        report.update(
            screenshots=[str(p.relative_to(root)) for p in outcome.written],
            skipped=outcome.skipped,
            failed=outcome.failed,
        )
        if outcome.outputs:
            with_outputs = dataclasses.replace(bundle, outputs=outcome.outputs)
            for path in rewrite_blocks(root, with_outputs):
                print(f"rewrote command output in {path.relative_to(root)}", file=sys.stderr)
        for line in outcome.skipped:
            print(f"NOT remade (skipped): {line}", file=sys.stderr)
        for line in outcome.failed:
            print(f"NOT remade (failed): {line}", file=sys.stderr)
    leftover = check(root, bundle)
    for line in leftover:
        print(f"still stale: {line}", file=sys.stderr)
    print(json.dumps(report, indent=1))  # stdout holds only this summary
    incomplete = leftover or report.get("skipped") or report.get("failed")
    return 1 if incomplete else 0
