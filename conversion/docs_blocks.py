"""Generated blocks in the Markdown docs, filled from the shipped bundle (no TensorFlow needed).

A document marks a figure it quotes from the bundle instead of typing it::

    <!-- generated: model-card table=metrics -->
    | metric | int8 bundle | ... |
    <!-- /generated -->

    refer when P(malignant) >= <!-- generated: bundle value=calibration.referral_threshold
    format=.3f -->0.097<!-- /generated -->

A marker followed by a line break is a block (its text is rewritten between the two
marker lines); one followed by text on the same line is an inline value. Sources:

- ``model-card table=NAME``: a table of the bundle's ``MODEL_CARD.md``, copied verbatim.
  NAME is the slug of the heading (or bold line) just above the table: ``metrics``,
  ``on-sources-it-was-not-trained-on``, ``data-and-licence``, ``by-dataset``, ...
- ``model-card paragraph=NAME``: the card's line or list item whose first words slug to a
  name starting with NAME (``recall-per-class``).
- ``bundle table=summary``: what the bundle is, from its manifest.
- ``session-output session=NAME name=NAME``: the output of a command run after a
  screenshot session (``docs/screenshots.toml``), in a code fence. Only ``skinscan docs
  build`` with screenshots fills it (its times and ids change on every run), so the check
  leaves it alone.
- ``report file=PATH [table=N]``: the Nth table (default 1) of a committed report of the
  bundle (``training/reports/...``, relative to the repository root), copied verbatim; the
  report must name the bundle's id, so a report of another bundle is refused.
- ``bundle value=DOTTED.PATH [format=SPEC]``: one manifest value (``bundle_id``,
  ``metrics.int8_test.malignant_auc``), formatted with a Python format spec (``.3f``,
  ``.1%``, ``,``).

:func:`refresh` rewrites every block of a text; :func:`stale_blocks` lists the blocks
whose text differs from what the bundle says (``skinscan docs check``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import DocsError

START = re.compile(r"<!-- generated: (?P<source>[a-z-]+)(?P<args>(?:\s+[a-z-]+=[^\s>]+)*)\s*-->")
END = "<!-- /generated -->"
_ARG = re.compile(r"([a-z-]+)=([^\s>]+)")
_TABLE_ROW = re.compile(r"^\|.*\|\s*$")


def slug(text: str) -> str:
    """A heading's name: ``**By age band**`` -> ``by-age-band``."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)


@dataclass(frozen=True)
class Bundle:
    """What a generated block may quote: the manifest and the model card of one bundle."""

    folder: Path
    manifest: Mapping[str, Any]
    card: str
    root: Path = Path(".")  # where ``report file=`` paths start
    outputs: Mapping[str, str] = field(default_factory=dict)  # "session/name" -> output

    @classmethod
    def load(cls, folder: Path, root: Path | None = None) -> Bundle:
        """Read ``manifest.json`` and ``MODEL_CARD.md`` of a bundle folder."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise DocsError(f"cannot read the bundle in {folder}: {exc}") from exc
        return cls(folder, manifest, card, root if root is not None else Path("."))

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])


def markdown_tables(text: str) -> list[tuple[str, str]]:
    """(heading, table) of every table of a Markdown text, in order; the heading is the
    last heading or bold line above the table."""
    tables: list[tuple[str, str]] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if _TABLE_ROW.match(line):
            end = i
            while end < len(lines) and _TABLE_ROW.match(lines[end]):
                end += 1
            tables.append((heading, "\n".join(lines[i:end])))
            i = end
            continue
        stripped = line.strip()
        if stripped.startswith("#") or (stripped.startswith("**") and stripped.endswith("**")):
            heading = stripped.lstrip("#")
        i += 1
    return tables


def card_tables(card: str) -> dict[str, str]:
    """Every table of a model card, keyed by the slug of the heading or bold line above it."""
    tables: dict[str, str] = {}
    for heading, table in markdown_tables(card):
        tables.setdefault(slug(heading), table)
    return tables


def card_paragraph(card: str, name: str) -> str:
    """The card's first line or list item whose opening words slug to ``name...``."""
    for line in card.splitlines():
        text = line.strip()
        if text and not text.startswith(("#", "|")) and slug(text).startswith(name):
            return text
    raise DocsError(f"the model card has no line starting with {name!r}")


def _dig(manifest: Mapping[str, Any], path: str) -> Any:
    value: Any = manifest
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise DocsError(f"the manifest has no value {path!r} (stopped at {part!r})")
    return value


def manifest_value(manifest: Mapping[str, Any], path: str, spec: str = "") -> str:
    """One manifest value as text, formatted with a Python format spec."""
    value = _dig(manifest, path)
    if isinstance(value, (Mapping, list)):
        raise DocsError(f"manifest value {path!r} is not a single value")
    try:
        return format(value, spec)
    except (TypeError, ValueError) as exc:
        raise DocsError(f"format {spec!r} does not fit manifest value {path!r}: {exc}") from exc


def _ci(metrics: Mapping[str, Any], key: str) -> str:
    low, high = (metrics.get("ci95") or {}).get(key, (None, None))
    value = metrics.get(key)
    if not isinstance(value, float):
        return "n/a"
    if isinstance(low, float) and isinstance(high, float):
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}"


def summary_table(bundle: Bundle) -> str:
    """What the shipped bundle is, in one table, from its manifest alone."""
    m = bundle.manifest
    prov, cal = m.get("provenance", {}), m.get("calibration", {})
    size = ((m.get("files") or {}).get("model.tflite") or {}).get("size")
    sources = (prov.get("extra") or {}).get("sources") or {}
    counts = ", ".join(f"{name} {sum(c.values()):,}" for name, c in sorted(sources.items()))
    test = m.get("metrics", {}).get("int8_test") or {}
    rows = [
        ("bundle", f"`{bundle.bundle_id}` (run `{prov.get('run_id', '?')}`)"),
        (
            "model",
            f"{prov.get('backbone', '?')}, full-integer int8"
            + (f", {size:,} bytes" if isinstance(size, int) else ""),
        ),
        ("preprocessing", f"spec {m.get('preprocessing', {}).get('version', '?')}"),
        (
            "referral",
            f"refer when P(malignant) ≥ {cal.get('referral_threshold', float('nan')):.3f} "
            f"(temperature {cal.get('temperature', float('nan')):.3f})",
        ),
        ("training data", str(prov.get("data_source", "?"))),
    ]
    if counts:
        rows.append(("images per source (all splits)", counts))
    if test:
        rows.append(
            (
                f"test split ({test.get('n_images', 0):,} images, int8)",
                f"balanced accuracy {_ci(test, 'balanced_accuracy')}; "
                f"malignant AUC {_ci(test, 'malignant_auc')}; "
                f"sensitivity {_ci(test, 'sensitivity')}; "
                f"specificity {_ci(test, 'specificity')}",
            )
        )
    lines = ["| shipped bundle | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def render(source: str, args: Mapping[str, str], bundle: Bundle) -> str | None:
    """The text a generated block of ``source`` with ``args`` must hold; None: keep it."""
    if source == "model-card":
        if "table" in args:
            tables = card_tables(bundle.card)
            if args["table"] not in tables:
                known = ", ".join(sorted(tables))
                raise DocsError(f"the model card has no table {args['table']!r} (it has: {known})")
            return tables[args["table"]]
        if "paragraph" in args:
            return card_paragraph(bundle.card, args["paragraph"])
        raise DocsError("model-card blocks need table=NAME or paragraph=NAME")
    if source == "bundle":
        if args.get("table") == "summary":
            return summary_table(bundle)
        if "value" in args:
            return manifest_value(bundle.manifest, args["value"], args.get("format", ""))
        raise DocsError("bundle blocks need table=summary or value=DOTTED.PATH")
    if source == "session-output":
        key = f"{args.get('session', '')}/{args.get('name', '')}"
        output = bundle.outputs.get(key)
        return None if output is None else f"```\n{output.rstrip()}\n```"
    if source == "report":
        return report_table(bundle, args.get("file", ""), args.get("table", "1"))
    raise DocsError(f"unknown generated source {source!r} (model-card, bundle or report)")


def report_table(bundle: Bundle, file: str, number: str) -> str:
    """The ``number``-th table of a report of ``bundle`` (which must name the bundle's id)."""
    path = bundle.root / file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DocsError(f"report {file}: {exc}") from exc
    if bundle.bundle_id not in text:
        raise DocsError(f"report {file} is not of the shipped bundle {bundle.bundle_id}")
    tables = [table for _, table in markdown_tables(text)]
    if not number.isdigit() or not 1 <= int(number) <= len(tables):
        raise DocsError(f"report {file} has {len(tables)} table(s), not a table {number}")
    return tables[int(number) - 1]


@dataclass(frozen=True)
class Block:
    """One generated block of a document: where it is, what it asks for, what it holds."""

    line: int
    source: str
    args: dict[str, str]
    inline: bool
    start: int  # offset of the first character of the content
    end: int  # offset of the closing marker
    text: str

    @property
    def spec(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.source} {args}".strip()


def _fenced(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the fenced code blocks of a Markdown text."""
    spans, opened, offset = [], None, 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            if opened is None:
                opened = offset
            else:
                spans.append((opened, offset + len(line)))
                opened = None
        offset += len(line)
    return spans


def blocks(text: str, name: str = "<text>") -> Iterator[Block]:
    """Every generated block of a document, in order; a marker left open is an error.

    A marker inside a fenced code block is an example, not a block."""
    fences = _fenced(text)
    pos = 0
    while match := START.search(text, pos):
        if any(start <= match.start() < end for start, end in fences):
            pos = match.end()
            continue
        close = text.find(END, match.end())
        line = text.count("\n", 0, match.start()) + 1
        if close < 0:
            raise DocsError(f"{name}:{line}: '{match.group(0)}' has no closing {END}")
        nested = START.search(text, match.end(), close)
        if nested:
            raise DocsError(f"{name}:{line}: generated block opened again before {END}")
        args = dict(_ARG.findall(match.group("args")))
        content = text[match.end() : close]
        inline = not content.startswith("\n")
        yield Block(line, match.group("source"), args, inline, match.end(), close, content)
        pos = close + len(END)


def expected_text(block: Block, bundle: Bundle, name: str = "<text>") -> str:
    """What ``block`` must hold for ``bundle``: inline text, or the block framed by newlines."""
    try:
        body = render(block.source, block.args, bundle)
    except DocsError as exc:
        raise DocsError(f"{name}:{block.line}: {exc}") from exc
    if body is None:
        return block.text
    return body if block.inline else f"\n{body}\n"


def refresh(text: str, bundle: Bundle, name: str = "<text>") -> str:
    """``text`` with every generated block rewritten from ``bundle``."""
    out, pos = [], 0
    for block in blocks(text, name):
        out += [text[pos : block.start], expected_text(block, bundle, name)]
        pos = block.end
    out.append(text[pos:])
    return "".join(out)


def stale_blocks(text: str, bundle: Bundle, name: str = "<text>") -> list[str]:
    """One line per block whose text is not what ``bundle`` says, naming file, line and block."""
    return [
        f"{name}:{block.line}: generated block '{block.spec}' differs from {bundle.bundle_id}"
        for block in blocks(text, name)
        if block.text != expected_text(block, bundle, name)
    ]
