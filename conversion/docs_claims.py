"""Which bundle a document calls "shipped": it must be the manifest's, or be labelled history.

A *claim* is a word of shipping (``shipped``, ``ships``, ``device/models/default``) and the
model name nearest to it (within :data:`WINDOW` words, in the same sentence, table row,
list item or command): a full bundle id (``ham10000-v3k-int8-0f1f77bc``), a run name
(``ham10000-isic-v6``) or a short model name (``v3k``, ``v6``). ``spec v6``, ``MobileNet
v2`` and the like are not model names. "not shipped" and "never shipped" are not claims.

In a command (a fenced code block) the rule is about writing: a command whose ``--out``,
``--shift-threshold`` or ``--fit-familiarity`` is ``device/models/default`` replaces the
shipped bundle, and is stale unless it says ``--overwrite-shipped`` (which ``skinscan
convert`` demands too).

A claim naming anything but the shipped bundle is stale unless a word of history stands
within :data:`WINDOW` words of it (``until``, ``before``, ``previous``, ``earlier``,
``formerly``, ``history``, ``replaced``, ``retired``, ``no longer``, ``was shipped``...).
History pages (:data:`HISTORY`: the model history and the run reports) are checked on
their headings only: a heading that calls an old model shipped must say so as history too.
Preregistrations (``PREREGISTERED*.md``) are frozen before their run and never checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WINDOW = 8

# Documents that describe the product now, relative to the repository root.
CURRENT = (
    "README.md",
    "docs/*.md",
    "conversion/README.md",
    "training/README.md",
    "training/experiments/README.md",
    "clinic/README.md",
    "hardware/*.md",
)
# Documents that record the past: only their headings are held to the rule.
HISTORY = (
    "docs/model-history.md",
    "training/reports/**/README.md",
    "training/reports/**/report.md",
)

_BUNDLE_ID = r"(?:ham10000|isic)[a-z0-9-]*?-int8-[0-9a-f]{8}"
_RUN = r"(?:ham10000(?:-isic)?-)?v\d+[a-z]?"
_NAME = re.compile(rf"(?<![\w./-])(?:{_BUNDLE_ID}|{_RUN})(?![\w/])", re.IGNORECASE)
# Words before a "vN" that make it something other than a model.
_NOT_A_MODEL = re.compile(r"(spec|specs|recipe|mobilenet|version|python|tf|keras|litert)\W*$", re.I)
_SHIP = re.compile(r"\bship(?:ped|s)?\b|device/models/default", re.IGNORECASE)
_NOT_SHIPPED = re.compile(r"\b(?:not|never|un)[\s-]*ship(?:ped)?\b", re.IGNORECASE)
_HISTORY = re.compile(
    r"\b(until|before|previous(?:ly)?|earlier|formerly|former|history|historical|replaced|"
    r"superseded|retired|no longer|used to|(?:was|were|had been|then) shipped)\b",
    re.IGNORECASE,
)
_WRITES_SHIPPED = re.compile(
    r"--(?:out|shift-threshold|fit-familiarity)[=\s]+\S*device/models/default\b"
)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+(?=[A-Z*`(\[])")


@dataclass(frozen=True)
class Stale:
    """A sentence that calls a bundle shipped which the manifest does not name."""

    path: str
    line: int
    name: str
    text: str
    kind: str = "calls"  # or "writes": a command that replaces the shipped bundle

    def __str__(self) -> str:
        what = (
            "command writes into the shipped bundle without --overwrite-shipped"
            if self.kind == "writes"
            else f"calls {self.name!r} shipped"
        )
        return f"{self.path}:{self.line}: {what}: {self.text.strip()[:160]}"


def shipped_names(manifest: Mapping[str, Any]) -> set[str]:
    """The names that mean the shipped bundle: its id, its run and its short model names."""
    bundle_id = str(manifest["bundle_id"]).lower()
    run_id = str((manifest.get("provenance") or {}).get("run_id", "")).lower()
    names = {bundle_id, run_id, bundle_id.split("-int8-")[0]} - {""}
    for token in re.findall(r"\bv\d+[a-z]?\b", f"{bundle_id} {run_id}".replace("-", " ")):
        names.add(token)
        names.add(re.sub(r"[a-z]$", "", token))
    return names


def units(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every sentence, table row, list item, heading and command of a page.

    A command (from a fenced code block, continuation lines joined) starts with ``$ ``."""
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    lines = text.splitlines()
    in_code = False
    para: list[tuple[int, str]] = []

    def flush() -> Iterator[tuple[int, str]]:
        if para:
            first = para[0][0]
            joined = " ".join(t for _, t in para)
            for sentence in _SENTENCE.split(joined):
                yield first, sentence
            para.clear()

    command: list[str] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            yield from flush()
            in_code = not in_code
            continue
        if in_code:
            command.append(stripped.rstrip("\\"))
            if not stripped.endswith("\\"):
                yield number - len(command) + 1, "$ " + " ".join(command)
                command = []
            continue
        if not stripped:
            yield from flush()
        elif stripped.startswith(("|", "#")):
            yield from flush()
            yield number, stripped
        elif re.match(r"([-*+]|\d+\.)\s", stripped):
            yield from flush()
            para.append((number, stripped))
        else:
            para.append((number, stripped))
    yield from flush()


def _words(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def _word_index(spans: list[tuple[int, int]], offset: int) -> int:
    for i, (start, end) in enumerate(spans):
        if start <= offset < end or offset < start:
            return i
    return len(spans)


def claims(text: str) -> Iterator[tuple[str, str]]:
    """(model name, sentence) for every claim of a text that is not labelled history."""
    for _, unit in units(text):
        yield from _claims_in(unit)


def _claims_in(unit: str) -> Iterator[tuple[str, str]]:
    plain = _NOT_SHIPPED.sub(" ", _LINK_TARGET.sub("]", unit))
    spans = _words(plain)
    history = [_word_index(spans, m.start()) for m in _HISTORY.finditer(plain)]
    names = [
        (_word_index(spans, m.start()), m.group(0).lower())
        for m in _NAME.finditer(plain)
        if not _NOT_A_MODEL.search(plain[max(0, m.start() - 12) : m.start()])
    ]
    if not names:
        return
    for ship in _SHIP.finditer(plain):
        at = _word_index(spans, ship.start())
        # Nearest name wins; on a tie the one after ("the shipped v6") is the one meant.
        distance, _, name, where = min((abs(i - at), i < at, n, i) for i, n in names)
        labelled = any(min(abs(h - at), abs(h - where)) <= WINDOW for h in history)
        if distance <= WINDOW and not labelled:
            yield name, unit


def stale_claims(text: str, shipped: set[str], path: str = "<text>") -> list[Stale]:
    """Claims of a current document that name a bundle other than the shipped one."""
    found = []
    for line, unit in units(text):
        if unit.startswith("$ "):
            if _WRITES_SHIPPED.search(unit) and "--overwrite-shipped" not in unit:
                found.append(Stale(path, line, "device/models/default", unit[2:], "writes"))
            continue
        for name, sentence in _claims_in(unit):
            if name not in shipped:
                found.append(Stale(path, line, name, sentence))
    return found


def stale_history_headings(text: str, shipped: set[str], path: str = "<text>") -> list[Stale]:
    """Headings of a history page that call an old bundle shipped without saying when."""
    found = []
    for line, unit in units(text):
        if unit.startswith("#"):
            for name, sentence in _claims_in(unit):
                if name not in shipped:
                    found.append(Stale(path, line, name, sentence))
    return found


def documents(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The files under ``root`` that the glob ``patterns`` name, sorted, each once."""
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def check_tree(root: Path, manifest: Mapping[str, Any]) -> list[Stale]:
    """Every stale claim in the current documents and history headings under ``root``."""
    shipped = shipped_names(manifest)
    history = set(documents(root, HISTORY))
    problems: list[Stale] = []
    for path in documents(root, CURRENT):
        if path not in history:
            text = path.read_text(encoding="utf-8")
            problems += stale_claims(text, shipped, str(path.relative_to(root)))
    for path in sorted(history):
        text = path.read_text(encoding="utf-8")
        problems += stale_history_headings(text, shipped, str(path.relative_to(root)))
    return problems
