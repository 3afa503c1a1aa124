"""The right lesion in follow-up (issue 28 item 4) and the bundle that made a scan
(issue 27 item 3): side and lesion label chosen with the buttons, pairing only the
same lesion, the change in lesion area with a scale, the question before saving
without a patient, giving a patient to a saved scan, and the bundle line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from app_fakes import sample_result

from device.app.actions import Actions
from device.app.controller import initial_state, step, view
from device.app.events import (
    Analyzed,
    AssignPatient,
    Button,
    CardRead,
    Frame,
    HistoryLoaded,
    LoadHistory,
    PatientAssigned,
    ReadCard,
    Save,
    Saved,
)
from device.app.lesion_area import lesion_area_fraction, photo_scale
from device.app.patient import area_line, earlier_same_lesion
from device.app.results import (
    bundle_label_of,
    bundle_text,
    record_from_result,
    result_from_record,
)
from device.records.assign import current_records
from device.records.memory_store import MemoryScanStore
from device.records.store import SqliteScanStore
from device.records.testing import make_record
from device.ui.screens import CardScreen, CompareScreen, ErrorScreen, HistoryScreen, SiteScreen

REF = "SKS-000142-7F3Q"
LABEL = "adapted for clinic-north, 2026-12-07"


def run(state, *events):
    screen = None
    for event in events:
        state, screen = step(state, event)
    return state, screen


def frame() -> Frame:
    return Frame(np.zeros((48, 64, 3), np.uint8), (10, 10, 30, 30), True, None, 30)


def with_patient():
    state, _ = run(initial_state(), frame(), Button("patient"), Button("capture"), CardRead(REF))
    return state


def choose(state, site: str, side: str | None, lesion: str):
    """Open the body-site list and choose with the buttons (DOWN until the entry is lit)."""
    state, screen = step(state, Button("toggle"))
    for wanted in (site, side, lesion):
        if wanted is None:
            continue
        assert isinstance(screen, SiteScreen)
        while screen.sites[screen.index] != wanted:
            state, screen = step(state, Button("next"))
        state, screen = step(state, Button("capture"))
    return state, screen


def item(key, when, site, lesion, side=None, ref=REF, p=0.1, **kw):
    return replace(
        sample_result(key, p_malignant=p),
        saved_id=f"{key}-id",
        created_at=when,
        patient_ref=ref,
        body_site=site,
        body_side=side,
        lesion=lesion,
        **kw,
    )


# ---- choosing the lesion ------------------------------------------------------------------------


def test_a_paired_site_asks_the_side_then_the_lesion():
    state = with_patient()
    state, screen = step(state, Button("toggle"))
    while screen.sites[screen.index] != "forearm":
        state, screen = step(state, Button("next"))
    state, screen = step(state, Button("capture"))
    assert screen.title == "forearm: which side?" and screen.sites == ("left", "right")
    state, screen = run(state, Button("next"), Button("capture"))
    assert screen.title == "right forearm: which lesion?" and screen.sites[0] == "1"
    assert "largest" in screen.sites  # a short name instead of a number
    state, screen = step(state, Button("back"))  # one step back: the side again
    assert screen.title == "forearm: which side?"
    state, screen = run(state, Button("toggle"), Button("capture"), Button("next"))
    state, screen = step(state, Button("capture"))
    assert (state.body_site, state.lesion.side, state.lesion.lesion) == ("forearm", "left", "2")
    assert screen.patient == f"Patient {REF} · left forearm, lesion 2"
    assert screen.message == "Body site: left forearm, lesion 2"
    # The scan made now carries the whole key, and the record keeps it.
    state, _ = run(state, Button("capture"), Analyzed(sample_result()), Button("save"))
    (save,) = state.commands
    assert isinstance(save, Save)
    result = save.result
    assert (result.body_site, result.body_side, result.lesion) == ("forearm", "left", "2")
    record = record_from_result(result, device_id="d", bundle_id="b", bundle_sha256="0" * 64)
    assert record.lesion_key == (REF, "forearm", "left", "2")


def test_an_unpaired_site_has_no_side_and_a_new_patient_starts_without_a_lesion():
    state, screen = choose(with_patient(), "face", None, "upper")
    assert (state.body_site, state.lesion.side, state.lesion.lesion) == ("face", None, "upper")
    assert screen.patient == f"Patient {REF} · face, lesion upper"
    state, _ = run(state, Button("patient"), Button("capture"), CardRead("K7-2291-55"))
    assert state.body_site is None and state.lesion.lesion is None and state.lesion.side is None


# ---- pairing only the same lesion -----------------------------------------------------------


def test_two_lesions_of_one_site_are_never_paired():
    items = (
        item("s5", "2026-04-10T09:00:00+00:00", "face", "2", p=0.57),
        item("s4", "2026-04-01T09:00:00+00:00", "face", "1", p=0.22),
        item("s3", "2026-03-01T09:00:00+00:00", "forearm", "1", side="right"),
        item("s2", "2026-02-01T09:00:00+00:00", "face", "2", p=0.40),
        item("s1", "2026-01-01T09:00:00+00:00", "forearm", "1", side="left"),
        item("s0", "2025-12-01T09:00:00+00:00", "face", None),  # saved before labels
    )
    assert earlier_same_lesion(items, 0) == [3]  # face 2 only: not face 1, not unlabelled
    assert earlier_same_lesion(items, 1) == []  # face 1 has no earlier scan
    assert earlier_same_lesion(items, 2) == []  # right forearm is not the left one
    assert earlier_same_lesion(items, 5) == []  # no label: no follow-up at all
    state, screen = run(with_patient(), Button("next"), HistoryLoaded(items, REF))
    assert screen.earlier == 1
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, CompareScreen)
    assert screen.site == "face, lesion 2" and screen.position == "1 of 1"
    assert screen.change.endswith("P(malignant) 40% → 57%")


def test_the_area_change_is_shown_only_when_both_scans_have_a_scale():
    scale = 20.0 / 32  # the 32 px sample photo covers 20 mm
    a = item("a", "2026-01-01T09:00:00+00:00", "back", "1", lesion_area=0.10, mm_per_px=scale)
    b = item("b", "2026-02-01T09:00:00+00:00", "back", "1", lesion_area=0.15, mm_per_px=scale)
    assert area_line(a, b) == "Lesion area 40.0 → 60.0 mm² (+50%)"
    assert area_line(a, replace(b, mm_per_px=None)) == "Lesion area: no scale"
    assert area_line(a, replace(b, lesion_area=None)) == "Lesion area: not measured"
    _state, screen = run(
        with_patient(), Button("next"), HistoryLoaded((b, a), REF), Button("capture")
    )
    assert screen.area == "Lesion area 40.0 → 60.0 mm² (+50%)"


def test_the_photo_scale_follows_from_the_field_width_and_the_crop():
    assert photo_scale(24.0, 1024, 704, 352) == pytest.approx(24.0 / 1024 * 2)
    assert photo_scale(0.0, 1024, 704, 352) is None  # not measured: no scale, no guess
    assert photo_scale(None, 1024, 704, 352) is None


def test_the_lesion_area_is_measured_on_the_saved_photo(ham_dir):
    import cv2

    path = sorted((ham_dir / "images").glob("*.jpg"))[0]
    photo = cv2.resize(cv2.imread(str(path))[..., ::-1], (352, 352))
    fraction = lesion_area_fraction(photo)
    assert fraction is not None and 0.02 < fraction < 0.9
    blank = np.full((64, 64, 3), 180, np.uint8)
    assert lesion_area_fraction(blank) is None


# ---- saving without a patient ---------------------------------------------------------------


def at_result(state=None):
    state = state or initial_state()
    state, _ = run(state, frame(), Button("capture"), Analyzed(sample_result()))
    return state


def test_saving_without_a_patient_asks_once_and_each_answer_does_what_it_says():
    state, screen = step(at_result(), Button("save"))
    assert isinstance(screen, ErrorScreen) and state.commands == ()
    assert screen.title == "No patient card read — save without a patient?"
    answers = {(h.button, h.action) for h in screen.hints}
    assert answers == {("capture", "Read card"), ("save", "Save anyway"), ("back", "Cancel")}
    # Cancel: back to the unsaved result, nothing saved.
    cancelled, screen = step(state, Button("back"))
    assert cancelled.mode == "result" and cancelled.commands == () and not screen.is_saved
    # Save anyway: saved without a patient, asked only once.
    saved, _ = step(state, Button("save"))
    assert isinstance(saved.commands[0], Save) and saved.commands[0].result.patient_ref is None
    saved, _ = step(saved, Saved("x", "2026-01-01T00:00:00+00:00"))
    assert step(saved, Button("save"))[0].mode == "result"  # saved: no question again
    # Read card: the card is read, the result gets the patient and is saved with it.
    reading, screen = step(state, Button("capture"))
    assert isinstance(screen, CardScreen)
    reading, _ = step(reading, Button("capture"))
    assert reading.commands == (ReadCard(),)
    done, screen = step(reading, CardRead(REF))
    assert done.mode == "result" and done.patient_ref == REF
    (command,) = done.commands
    assert isinstance(command, Save) and command.result.patient_ref == REF
    # Cancelling the card screen returns to the result, not the live view.
    back, _ = run(state, Button("capture"), Button("back"))
    assert back.mode == "result"


def test_a_scan_with_a_patient_is_saved_without_a_question():
    state = at_result(with_patient())
    state, _ = step(state, Button("save"))
    assert isinstance(state.commands[0], Save)


# ---- giving a patient to a saved scan -------------------------------------------------------


def test_a_saved_scan_without_a_patient_is_given_one_with_the_card_reader():
    orphan = item("s1", "2026-01-01T09:00:00+00:00", "back", "1", ref=None)
    state, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded((orphan,)))
    assert ("capture", "Give patient") in [(h.button, h.action) for h in screen.hints]
    assert "no patient" in screen.subject
    state, screen = step(state, Button("capture"))
    assert isinstance(screen, CardScreen) and state.lesion.card_for == "assign"
    state, _ = run(state, Button("capture"), CardRead(REF))
    assert state.mode == "history" and state.commands == (AssignPatient("s1-id", REF),)
    assert state.patient_ref is None  # the live view's patient is not changed
    state, _ = step(state, PatientAssigned("s1-id", "new-id", REF))
    assert state.commands == (LoadHistory(None),) and REF in state.message


def test_assigning_through_the_app_saves_a_correction_and_history_shows_it_once(tmp_path):
    class Worker(Actions):
        pass

    worker = Worker()
    worker.store = SqliteScanStore(tmp_path / "d", bytes(32))
    orphan = make_record(1, body_site="back", lesion="1")
    worker.store.save(orphan)
    event = worker.execute(AssignPatient(orphan.scan_id, REF))
    assert isinstance(event, PatientAssigned) and event.patient_ref == REF
    shown = current_records(worker.store.history())
    assert [(r.patient_ref, r.corrects) for r in shown] == [(REF, orphan.scan_id)]
    again = worker.execute(AssignPatient(orphan.scan_id, REF))
    assert again.problem == "storage" and "NOT given" in again.detail
    worker.store.close()


# ---- which bundle made the scan -------------------------------------------------------------


def test_the_bundle_label_comes_from_the_manifest():
    with_property = SimpleNamespace(manifest=SimpleNamespace(adaptation_label=LABEL))
    assert bundle_label_of(with_property) == LABEL
    section = {"site": "clinic-north", "adapted_at": "2026-12-07T13:00:00+00:00"}
    older = SimpleNamespace(manifest=SimpleNamespace(adaptation=section))
    assert bundle_label_of(older) == LABEL
    base = SimpleNamespace(manifest=SimpleNamespace(adaptation=None, adaptation_label=None))
    assert bundle_label_of(base) is None and bundle_label_of(None) is None
    assert bundle_text("b1", LABEL) == f"Model b1 · {LABEL}"
    assert bundle_text("b1", None) == "Model b1"


def test_result_history_and_record_name_the_bundle_and_its_adaptation():
    result = replace(sample_result(), bundle_id="site-bundle-1", bundle_label=LABEL)
    state, _ = run(initial_state(), frame(), Button("capture"), Analyzed(result))
    assert view(state).bundle == f"Model site-bundle-1 · {LABEL}"
    record = record_from_result(
        state.result, device_id="d", bundle_id="site-bundle-1", bundle_sha256="0" * 64
    )
    store = MemoryScanStore()
    store.save(record)
    # The label is the record's own: history shows it whatever bundle runs now.
    back = result_from_record(store.get(record.scan_id))
    assert (back.bundle_id, back.bundle_label) == ("site-bundle-1", LABEL)
    _, screen = run(initial_state(), frame(), Button("next"), HistoryLoaded((back,)))
    assert isinstance(screen, HistoryScreen)
    assert screen.result.bundle == f"Model site-bundle-1 · {LABEL}"


# ---- the clinic's follow-up -----------------------------------------------------------------


def test_the_clinic_compares_only_the_same_lesion_and_gives_mm2():
    from clinic.followup import compare, different_lesions

    image = np.full((64, 64, 3), 200, np.uint8)
    image[16:48, 16:48] = (90, 50, 40)  # a dark square lesion, a quarter of the photo
    a = make_record(1, image=image, patient_ref=REF, body_site="face", lesion="1", mm_per_px=0.25)
    b = make_record(2, image=image, patient_ref=REF, body_site="face", lesion="1", mm_per_px=0.25)
    other = make_record(3, image=image, patient_ref=REF, body_site="face", lesion="2")
    c = compare(a, b)
    assert c.same_lesion and c.area_mm2_earlier is not None
    assert c.area_mm2_earlier == pytest.approx(c.area_earlier * (64 * 0.25) ** 2)
    assert c.area_mm2_change == pytest.approx(0.0)
    assert different_lesions(a, other) and not compare(a, other).same_lesion
    unlabelled = replace(other, lesion=None)
    assert not different_lesions(a, unlabelled)  # not known to differ: compared with a warning
    assert not compare(a, unlabelled).same_lesion
    assert compare(a, replace(b, mm_per_px=None)).area_mm2_change is None


def test_an_export_carries_the_lesion_key_scale_label_and_damage_into_the_clinic(tmp_path):
    from clinic.importer import import_export
    from clinic.store import ClinicStore
    from device.records.export import (
        export_records,
        generate_clinic_keypair,
        load_private_key,
        load_public_key,
    )
    from device.records.queries import iter_exportable

    private, public = generate_clinic_keypair(tmp_path / "keys")
    data = tmp_path / "scanner"
    fields = dict(
        patient_ref=REF, body_site="forearm", body_side="left", lesion="2", mm_per_px=0.05
    )
    sound = make_record(1, bundle_label=LABEL, **fields)
    damaged = make_record(2, **fields)
    with SqliteScanStore(data, bytes(32)) as store:
        store.save(sound)
        store.save(damaged)
        heatmap = data / "images" / f"{damaged.scan_id}.heatmap"
        blob = bytearray(heatmap.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        heatmap.write_bytes(bytes(blob))
        skipped: dict[str, str] = {}
        records = iter_exportable(store, None, skipped)
        export_records(records, tmp_path / "usb", load_public_key(public), device_id="d")
    assert skipped == {}
    with ClinicStore(tmp_path / "clinic") as clinic:
        report = import_export(clinic, tmp_path / "usb", load_private_key(private), imported_by="t")
        assert len(report.added) == 2
        kept = clinic.get_scan(sound.scan_id)
        assert kept.lesion_key == (REF, "forearm", "left", "2") and kept.mm_per_px == 0.05
        assert kept.bundle_label == LABEL and kept.heatmap is not None and not kept.damaged
        hurt = clinic.get_scan(damaged.scan_id)
        assert hurt.heatmap is None and "heatmap file was altered" in hurt.damaged["heatmap"]
        assert (hurt.image == damaged.image).all() and hurt.risk_tier == damaged.risk_tier


def test_a_scan_made_by_an_adapted_bundle_says_so_on_screen_in_the_record_and_in_history(
    tmp_path,
):
    """The shipped bundle adapted for a site (as `skinscan adapt` writes it), in the app."""
    from adaptation_support import perturbed_head, write_adapted
    from app_fakes import FillableStore, make_app

    from device.runtime.bundle import load_bundle
    from device.ui.screens import ResultScreen

    base = load_bundle(Path(__file__).resolve().parents[1] / "device" / "models" / "default")
    adapted = write_adapted(tmp_path / "adapted", base, perturbed_head(base))
    store = FillableStore()
    script = "wait 0.2, capture, wait 1, save, save, wait 0.2, next, wait 0.2"
    app = make_app(tmp_path, script, bundle_dir=adapted, store=store)
    assert app.run() == 0

    def screens_of(kind):
        return [s for s in app.screens_shown if isinstance(s, kind)]

    bundle_id = load_bundle(adapted).bundle_id
    result = screens_of(ResultScreen)[0]
    assert result.bundle == f"Model {bundle_id} · {LABEL}"
    (record,) = store.history()
    assert record.bundle_id == bundle_id and record.bundle_label == LABEL
    history = screens_of(HistoryScreen)[-1]
    assert history.result.bundle == f"Model {bundle_id} · {LABEL}"


def test_in_the_simulator_a_scan_saved_without_a_patient_is_given_one_from_history(
    tmp_path, ham_dir
):
    """Save without a card (the question, then Save anyway), then History: Give patient,
    the card under the lens: the scan is the patient's, in the records themselves."""
    import shutil

    import cv2
    from app_fakes import FillableStore, make_app
    from qr_cards import photographed_card, write_rgb

    lesion = sorted((ham_dir / "images").glob("*.jpg"))[0]
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(lesion, folder / "00-lesion.jpg")
    write_rgb(folder / "01-card.jpg", photographed_card(REF, cv2.imread(str(lesion))[..., ::-1]))
    store = FillableStore()
    script = (
        "wait 0.2, capture, wait 0.5, save, wait 0.2, save, wait 0.3, next, wait 0.3, "
        "capture, wait 0.2, capture, wait 0.5"
    )
    bundle = Path(__file__).resolve().parents[1] / "device" / "models" / "default"
    app = make_app(tmp_path, script, bundle_dir=bundle, source=folder, store=store)
    assert app.run() == 0
    questions = [s for s in app.screens_shown if isinstance(s, ErrorScreen)]
    assert questions and questions[0].title == "No patient card read — save without a patient?"
    everything = store.history()
    assert len(everything) == 2  # the original and its correction
    (shown,) = current_records(everything)
    assert shown.patient_ref == REF and shown.corrects is not None
    original = next(r for r in everything if r.scan_id == shown.corrects)
    assert original.patient_ref is None and (original.image == shown.image).all()
    history = [s for s in app.screens_shown if isinstance(s, HistoryScreen)]
    assert "no patient" in history[0].subject
    assert ("capture", "Give patient") in [(h.button, h.action) for h in history[0].hints]
    assert history[-1].total == 1 and "no patient" not in history[-1].subject


def test_a_card_read_cut_short_does_not_leave_a_stale_purpose_behind():
    from device.app.events import CameraReady, Failed

    state, _ = run(at_result(), Button("save"), Button("capture"))  # card, for the result
    assert state.lesion.card_for == "result"
    state, _ = run(state, Failed("camera", "unplugged"), CameraReady())  # gone, then back
    assert state.mode == "preview"
    state, _ = run(state, Button("patient"))  # later: the card for the live view's patient
    assert state.lesion.card_for == ""
    state, _ = run(state, Button("capture"), CardRead(REF))
    assert state.mode == "preview" and state.commands == () and state.patient_ref == REF
