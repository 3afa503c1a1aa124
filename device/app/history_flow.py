"""The history sub-flow: saved scans one by one, two scans of one lesion side by side,
and giving a patient to a scan saved without one."""

from __future__ import annotations

from dataclasses import replace

from device.app.events import Button, Event, Failed, LoadHistory, PatientAssigned, ResultView
from device.app.patient import area_line, change_line, earlier_same_lesion, lesion_text, when_text
from device.app.state import AppState, enter_preview, show_error
from device.app.view_parts import make_hints, result_screen
from device.ui.screens import CompareScreen, CompareSide, HistoryScreen, Screen


def load_history(state: AppState) -> AppState:
    """Ask for saved scans: this patient's while one is set."""
    return replace(state, commands=(LoadHistory(state.patient_ref),))


def _needs_patient(item: ResultView) -> bool:
    """A saved scan without a patient: the card can be read for it."""
    return not item.patient_ref and item.saved_id is not None


def history_step(state: AppState, event: Event) -> AppState:
    """Saved scans: older, heatmap, whose scans, compare, give a patient, or back."""
    if isinstance(event, PatientAssigned):
        scope = state.history_patient
        message = f"Scan given to patient {event.patient_ref}"
        return replace(state, message=message, commands=(LoadHistory(scope),))
    if isinstance(event, Failed):
        return show_error(state, event.problem, event.detail, back_to="history")
    if isinstance(event, Button):
        if event.name == "next" and len(state.history) > 1:
            return replace(state, history_index=(state.history_index + 1) % len(state.history))
        if event.name == "toggle":
            return replace(state, show_heatmap=not state.show_heatmap)
        if event.name == "save" and state.patient_ref:
            scope = None if state.history_patient else state.patient_ref
            return replace(state, commands=(LoadHistory(scope),))
        if event.name == "capture" and state.history:
            item = state.history[state.history_index]
            earlier = earlier_same_lesion(state.history, state.history_index)
            if earlier:
                return replace(state, mode="compare", compare_index=earlier[0])
            if _needs_patient(item):
                choice = replace(state.lesion, card_for="assign", assign_scan=item.saved_id)
                return replace(state, mode="card", card_problem="", message="", lesion=choice)
        if event.name in ("back", "capture"):
            return enter_preview(replace(state, message=""))
    return state


def compare_step(state: AppState, event: Event) -> AppState:
    """The comparison: an earlier scan, heatmap, or back to history."""
    if isinstance(event, Button):
        if event.name == "next":
            earlier = earlier_same_lesion(state.history, state.history_index)
            position = earlier.index(state.compare_index) if state.compare_index in earlier else -1
            return replace(state, compare_index=earlier[(position + 1) % len(earlier)])
        if event.name == "toggle":
            return replace(state, show_heatmap=not state.show_heatmap)
        if event.name in ("back", "capture"):
            return replace(state, mode="history")
    return state


def _compare_side(item: ResultView) -> CompareSide:
    return CompareSide(
        image=item.image,
        overlay=item.overlay,
        when=when_text(item.created_at),
        risk_tier=item.risk_tier,
        p_malignant=item.p_malignant,
        label=item.top3[0].name if item.top3 else item.label,
        unfamiliar=item.unfamiliar,
        referral_threshold=item.referral_threshold,
    )


def history_view(state: AppState) -> Screen:
    """The saved scan on screen, or what to say when there is none."""
    if not state.history:
        scope = "Patient " + state.history_patient if state.history_patient else ""
        hints = [("back", "Back")]
        if state.patient_ref:
            hints.insert(0, ("save", "This patient" if not state.history_patient else "All"))
        return HistoryScreen(
            index=0,
            total=0,
            result=None,
            scope=scope,
            hints=make_hints(*hints),
            unreadable=state.history_unreadable,
        )
    index, total = state.history_index, len(state.history)
    item = state.history[index]
    earlier = earlier_same_lesion(state.history, index)
    pairs: list[tuple[str, str]] = []
    if total > 1:
        pairs.append(("next", "Newest" if index == total - 1 else "Older"))
    pairs.append(("toggle", "Heatmap"))
    if earlier:
        pairs.append(("capture", "Compare"))
    elif _needs_patient(item):
        pairs.append(("capture", "Give patient"))
    if state.patient_ref:
        pairs.append(("save", "All" if state.history_patient else "This patient"))
    pairs.append(("back", "Live view"))
    if state.history_patient:
        scope = f"Patient {state.history_patient}"
    else:
        scope = "All patients" if state.patient_ref else ""
    # Within one patient's history the lesion says enough; among everyone's, name the patient.
    who = None if state.history_patient else (item.patient_ref or "no patient")
    where = lesion_text(item.body_site, item.body_side, item.lesion)
    subject = " · ".join(x for x in (who, where) if x)
    if "heatmap" in item.damaged:
        subject += " · heatmap damaged"
    title = f"Saved scan {index + 1} of {total}"
    return HistoryScreen(
        index=index,
        total=total,
        result=result_screen(item, state.show_heatmap, title, ()),
        created_at=when_text(item.created_at),
        hints=make_hints(*pairs),
        scope=scope,
        subject=subject,
        earlier=len(earlier),
        unreadable=state.history_unreadable,
    )


def compare_view(state: AppState) -> Screen:
    """Two scans of one lesion, older on the left, and what changed."""
    later = state.history[state.history_index]
    earlier = state.history[state.compare_index]
    older = earlier_same_lesion(state.history, state.history_index)
    position = older.index(state.compare_index) + 1 if state.compare_index in older else 1
    pairs = [("toggle", "Heatmap"), ("back", "History")]
    if len(older) > 1:
        pairs.insert(0, ("next", "Earlier"))
    return CompareScreen(
        earlier=_compare_side(earlier),
        later=_compare_side(later),
        show_heatmap=state.show_heatmap,
        site=lesion_text(later.body_site, later.body_side, later.lesion),
        change=change_line(earlier, later),
        area=area_line(earlier, later),
        position=f"{position} of {len(older)}",
        hints=make_hints(*pairs),
    )
