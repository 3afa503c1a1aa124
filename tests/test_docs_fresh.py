"""The docs cannot go stale: they name the shipped bundle, and quote only its figures.

The first test reads this checkout: every current document (README, docs/, the package
READMEs, hardware/) may call only the manifest's bundle "shipped", every generated block
must hold what the shipped bundle's manifest and model card say today (``skinscan docs
check``), and every screenshot the docs show is made by a session of
``docs/screenshots.toml`` (``skinscan docs build``). The others show that each rule fails
on a document that breaks it, with temporary documents.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import pytest

from conversion.cli import is_shipped_folder
from conversion.docs_blocks import Bundle, blocks, card_tables, refresh, stale_blocks
from conversion.docs_claims import (
    CURRENT,
    check_tree,
    documents,
    shipped_names,
    stale_claims,
    stale_history_headings,
)
from conversion.docs_cli import check
from conversion.docs_shots import load_registry, make_screenshots, pick, unmade_pictures
from device.cli import main
from device.errors import DocsError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "device" / "models" / "default"
OLD_ID = "ham10000-v3k-int8-0f1f77bc"


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.load(SHIPPED, ROOT)


def test_this_checkout_s_docs_are_fresh(bundle: Bundle) -> None:
    problems = check(ROOT, bundle)
    assert not problems, "run 'skinscan docs build' or fix by hand:\n" + "\n".join(problems)


def test_the_docs_do_quote_the_shipped_bundle_through_generated_blocks(bundle: Bundle) -> None:
    # The check above means something only if the docs hold blocks to check.
    found = [
        (path.name, block.source)
        for path in documents(ROOT, CURRENT)
        for block in blocks(path.read_text(encoding="utf-8"), path.name)
    ]
    assert len(found) >= 5, found
    assert {"model-card", "bundle"} <= {source for _, source in found}


def test_every_screenshot_in_the_docs_is_made_by_a_session() -> None:
    # The freshness check covers this; here: the pictures exist and the rule has work to do.
    pages = documents(ROOT, CURRENT)
    assert not unmade_pictures(ROOT, pages)
    shown = [p for p in pages if "](../clinic/docs/" in p.read_text(encoding="utf-8")]
    assert shown, "no clinic screenshot found in the docs: the link pattern is broken"
    for session in load_registry(ROOT / "docs/screenshots.toml"):
        for target in session.shots:
            assert (ROOT / target).is_file(), target


def test_a_picture_no_session_makes_fails(tmp_path: Path) -> None:
    (tmp_path / "docs" / "img").mkdir(parents=True)
    for name in ("new-screen.png", "chart.png"):
        (tmp_path / "docs" / "img" / name).write_bytes(b"png")
    page = tmp_path / "docs" / "guide.md"
    page.write_text("![new](img/new-screen.png) ![gone](img/gone.png) ![a chart](img/chart.png)\n")
    (tmp_path / "docs" / "screenshots.toml").write_text(
        '[measurements]\n"docs/img/chart.png" = "skinscan bench x"\n'
        '[[session]]\nname = "x"\nscript = "capture"\n[session.shots]\n"docs/img/a.png" = "r"\n'
    )
    problems = unmade_pictures(tmp_path, [page])
    assert len(problems) == 2, problems
    assert problems[0].startswith("docs/guide.md: img/new-screen.png is made by no session")
    assert problems[1] == "docs/guide.md: shows a missing picture img/gone.png"


# ---- the "shipped" rule, on temporary documents ---------------------------------------


def test_shipped_names_come_from_the_manifest(bundle: Bundle) -> None:
    names = shipped_names(bundle.manifest)
    assert bundle.bundle_id in names
    assert shipped_names({"bundle_id": OLD_ID, "provenance": {"run_id": "ham10000-v3"}}) >= {
        OLD_ID,
        "v3k",
        "v3",
        "ham10000-v3",
    }


@pytest.mark.parametrize(
    "sentence",
    [
        f"The shipped bundle (`{OLD_ID}`, spec 6, threshold 0.206) on the test split.",
        "For the shipped v3k the worst shift is colour-4000K.",
        "v3k is the shipped model.",
        f"`device/models/default/` is the bundle `{OLD_ID}`: EfficientNet-Lite0.",
        "| metric | **v3k** (shipped) | v3 |",
        f"skinscan convert --clamp-colour B --out device/models/default --bundle-id {OLD_ID}",
    ],
)
def test_calling_an_old_bundle_shipped_fails(bundle: Bundle, sentence: str) -> None:
    found = stale_claims(f"# A page\n\nSome text.\n\n{sentence}\n", shipped_names(bundle.manifest))
    assert found, sentence
    assert found[0].line == 5


@pytest.mark.parametrize(
    "sentence",
    [
        "The shipped bundle is `ham10000-isic-v6k-int8-95dad40e`.",
        "The shipped v6 refers more melanomas than v3k did.",
        "| metric | **v3k** (shipped until 2026-12-04) | v6 |",
        "Before v6, the shipped bundle was v3k.",
        "v4 was never shipped; v3k was replaced by v6.",
        "The spec v3 crop, as the shipped bundle uses (MobileNet v2 is not shipped).",
        "It trains with `--recipe v3 --deep-epochs 14`, the shipped recipe.",
        "[Spec v6](model-history.md#spec-v6-the-v3k-shipped) explains the clamp.",
    ],
)
def test_the_shipped_bundle_and_labelled_history_pass(bundle: Bundle, sentence: str) -> None:
    assert not stale_claims(sentence, shipped_names(bundle.manifest)), sentence


@pytest.mark.parametrize(
    ("command", "stale"),
    [
        ("skinscan convert runs/v3 --out device/models/default", True),
        (
            "skinscan convert --clamp-colour B \\\n"
            "    --out ./device/models/default/ --quantile 0.5",
            True,
        ),
        ("skinscan convert --shift-threshold device/models/default --metadata m", True),
        ("skinscan convert runs/v6 --out device/models/default --overwrite-shipped", False),
        ("skinscan convert runs/v6 --out runs/v6-bundle", False),
        ("git archive dde50ac device/models/default | tar -x -C runs/v3-bundle", False),
    ],
)
def test_a_command_that_overwrites_the_shipped_bundle_fails(
    bundle: Bundle, command: str, stale: bool
) -> None:
    page = f"# Steps\n\n```\n{command}\n```\n"
    found = stale_claims(page, shipped_names(bundle.manifest))
    assert bool(found) == stale, command
    if stale:
        assert "writes into the shipped bundle" in str(found[0])


def test_history_pages_must_label_old_bundles_in_their_headings(bundle: Bundle) -> None:
    shipped = shipped_names(bundle.manifest)
    page = "# History\n\n## v3k (shipped)\n\nThe shipped v3k was fine.\n"
    found = stale_history_headings(page, shipped)
    assert [s.line for s in found] == [3]  # the heading; the body of a history page is free
    assert not stale_history_headings(page.replace("(shipped)", "(shipped until v6)"), shipped)


def test_a_stale_page_in_a_tree_is_found_and_history_is_exempt(
    tmp_path: Path, bundle: Bundle
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "model-history.md").write_text(f"# H\n\nThe shipped {OLD_ID}.\n")
    assert not check_tree(tmp_path, bundle.manifest)
    (tmp_path / "docs" / "guide.md").write_text(f"# G\n\nThe shipped bundle is {OLD_ID}.\n")
    (found,) = check_tree(tmp_path, bundle.manifest)
    assert found.path == "docs/guide.md" and found.name == OLD_ID


# ---- generated blocks ----------------------------------------------------------------


def test_a_figure_the_card_does_not_have_is_stale_and_build_restores_it(
    tmp_path: Path, bundle: Bundle
) -> None:
    table = card_tables(bundle.card)["metrics"]
    threshold = f"{bundle.manifest['calibration']['referral_threshold']:.3f}"
    page = (
        "# Figures\n\n<!-- generated: model-card table=metrics -->\n"
        f"{table}\n<!-- /generated -->\n\nRefer at "
        "<!-- generated: bundle value=calibration.referral_threshold format=.3f -->"
        f"{threshold}<!-- /generated --> and more.\n"
    )
    assert not stale_blocks(page, bundle, "p.md")
    auc = f"{bundle.manifest['metrics']['int8_test']['malignant_auc']:.3f}"
    assert auc in table
    edited = page.replace(f"| {auc} |", "| 0.888 |").replace(f"-->{threshold}<", "-->0.206<")
    assert len(stale_blocks(edited, bundle, "p.md")) == 2
    assert refresh(edited, bundle) == page


def test_docs_check_and_build_on_a_tree(tmp_path: Path, capsys) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "figures.md"
    page.write_text("<!-- generated: bundle value=bundle_id -->old-id<!-- /generated -->\n")
    args = ["docs", "check", "--root", str(tmp_path), "--bundle", str(SHIPPED)]
    assert main(args) == 1
    assert "docs/figures.md:1" in capsys.readouterr().out
    build = ["docs", "build", "--no-screenshots", "--root", str(tmp_path), "--bundle", str(SHIPPED)]
    assert main(build) == 0
    assert "ham10000-isic-v6k-int8-95dad40e" in page.read_text()
    assert main(args) == 0


def test_a_marker_in_a_code_fence_is_an_example(bundle: Bundle) -> None:
    page = "```\n<!-- generated: model-card table=nope -->\nx\n<!-- /generated -->\n```\n"
    assert list(blocks(page)) == []
    assert refresh(page, bundle) == page


def test_command_output_is_filled_by_build_and_left_alone_by_check(bundle: Bundle) -> None:
    page = (
        "<!-- generated: session-output session=field-visit name=records-list -->\n"
        "```\nold output\n```\n<!-- /generated -->\n"
    )
    assert not stale_blocks(page, bundle)  # times and ids change on every run
    assert refresh(page, bundle) == page
    fresh = dataclasses.replace(bundle, outputs={"field-visit/records-list": "new output\n"})
    assert "```\nnew output\n```" in refresh(page, fresh)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<!-- generated: model-card table=metrics -->\n| a |\n", "no closing"),
        ("<!-- generated: model-card table=nope -->\n<!-- /generated -->", "no table 'nope'"),
        ("<!-- generated: bundle value=metrics.nope -->x<!-- /generated -->", "no value"),
        ("<!-- generated: weather table=today -->\n<!-- /generated -->", "unknown generated"),
    ],
)
def test_a_malformed_block_is_refused_by_name(bundle: Bundle, page: str, message: str) -> None:
    with pytest.raises(DocsError, match=message):
        refresh(page, bundle, "bad.md")


# ---- screenshots -----------------------------------------------------------------------


def test_selectors_pick_one_screen() -> None:
    names = ["starting", "card", "reading-card", "preview", "site-0", "site-4", "preview"]
    assert pick(names, "card") == "card"
    assert pick(names, "site-*@-1") == "site-4"
    assert pick(names, "preview@2") == "preview"
    assert pick(names, "site-*>preview") == "preview"
    assert pick(names, "compare-*") is None
    assert pick(names, "preview@3") is None


def test_a_malformed_screenshot_list_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "shots.toml"
    bad.write_text('[[session]]\nname = "x"\nscript = "capture"\ncolour = "red"\n')
    with pytest.raises(DocsError, match="unknown keys"):
        load_registry(bad)
    bad.write_text('[[session]]\nname = "x"\n[session.shots]\n"a.png" = "result"\n')
    with pytest.raises(DocsError, match="needs a script"):
        load_registry(bad)


@pytest.mark.skipif(importlib.util.find_spec("pygame") is None, reason="no pygame")
def test_the_quick_start_screenshot_is_remade_from_the_bundle(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.png"))
    outcome = make_screenshots(tmp_path, SHIPPED, None, only=["quick-start"], code=ROOT)
    assert not outcome.failed and not outcome.skipped
    (written,) = outcome.written
    import cv2

    image = cv2.imread(str(written))
    assert image.shape == (480, 800, 3)
    assert image.std() > 10  # a drawn screen, not a blank one


# ---- skinscan convert never writes into the shipped bundle by accident -------------------


def test_convert_refuses_the_shipped_bundle_folder(tmp_path: Path, capsys) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in SHIPPED.iterdir()}
    for argv in (
        ["convert", "runs/x", "--out", str(SHIPPED)],
        ["convert", "--clamp-colour", str(tmp_path), "--out", "device/models/default/"],
        ["convert", "--shift-threshold", str(SHIPPED), "--metadata", "m", "--images", "i"],
        ["convert", "--fit-familiarity", str(SHIPPED / "."), "--metadata", "m", "--images", "i"],
    ):
        assert main(argv) == 2, argv
        assert "--overwrite-shipped" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in SHIPPED.iterdir()} == before
    assert is_shipped_folder(tmp_path / "copy" / "device" / "models" / "default")
    assert not is_shipped_folder(tmp_path / "runs" / "v6-bundle")


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or not Path("/usr/bin/chromium").exists(),
    reason="no Playwright or chromium",
)
def test_the_clinic_screenshots_are_remade_in_chromium(tmp_path: Path) -> None:
    from clinic.docs_screens import main as shoot

    assert shoot(["--out", str(tmp_path), "--bundle", str(SHIPPED)]) == 0
    import cv2

    for name in ("import", "scan-page", "upload-result"):
        image = cv2.imread(str(tmp_path / f"{name}.png"))
        assert image is not None and image.shape == (1000, 1200, 3), name
