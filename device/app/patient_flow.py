"""The patient sub-flow: read a patient's card, choose the body site, its side and the
lesion, and ask before a scan is saved without a patient."""

from __future__ import annotations

from dataclasses import replace

from device.app.events import (
    AssignPatient,
    Button,
    CardRead,
    CardRefused,
    Event,
    Failed,
    Frame,
    ReadCard,
    Save,
)
from device.app.lesion_state import LesionChoice
from device.app.patient import BODY_SIDES, BODY_SITES, LESION_LABELS, PAIRED_SITES, lesion_text
from device.app.state import AppState, enter_preview
from device.app.view_parts import make_hints
from device.ui.screens import AnalyzingScreen, CardScreen, ErrorScreen, Screen, SiteScreen

NO_PATIENT_QUESTION = "No patient card read — save without a patient?"


def _leave_card(state: AppState) -> AppState:
    """Back from the card screen to where it was opened for."""
    target = state.lesion.card_for
    state = replace(state, lesion=replace(state.lesion, card_for="", assign_scan=None))
    if target == "result" and state.result is not None:
        return replace(state, mode="result")
    if target == "assign":
        return replace(state, mode="history")
    return enter_preview(state)


def card_step(state: AppState, event: Event) -> AppState:
    """The card screen: read it, clear the patient, or cancel."""
    if isinstance(event, Frame):
        return replace(state, frame=event)
    if isinstance(event, Button):
        if event.name == "capture":
            return replace(state, mode="reading", commands=(ReadCard(),), warning="")
        if event.name == "toggle" and state.patient_ref and not state.lesion.card_for:
            cleared = replace(
                state,
                patient_ref=None,
                body_site=None,
                lesion=LesionChoice(),
                message="Patient cleared: scan the next patient's card",
            )
            return enter_preview(cleared)
        if event.name == "back":
            return _leave_card(state)
    return state


def reading_step(state: AppState, event: Event) -> AppState:
    """While the card is read: the patient it holds, or why not."""
    if isinstance(event, CardRead):
        target = state.lesion.card_for
        if target == "assign" and state.lesion.assign_scan:
            scan_id = state.lesion.assign_scan
            done = replace(
                state,
                mode="history",
                card_problem="",
                lesion=replace(state.lesion, card_for="", assign_scan=None),
                commands=(AssignPatient(scan_id, event.patient_ref),),
            )
            return done
        same = event.patient_ref == state.patient_ref
        site = state.body_site if same else None  # a new patient starts without a site
        choice = state.lesion if same else LesionChoice()
        read = replace(
            state,
            patient_ref=event.patient_ref,
            body_site=site,
            card_problem="",
            lesion=replace(choice, card_for="", assign_scan=None),
            message="Patient card read" + ("" if site else ": choose the body site"),
        )
        if target == "result" and state.result is not None and state.result.saved_id is None:
            # The card was read to save the result on screen: it is this patient's scan.
            result = replace(state.result, patient_ref=event.patient_ref)
            return replace(read, mode="result", result=result, commands=(Save(result),))
        return enter_preview(read)
    if isinstance(event, CardRefused):
        return replace(state, mode="card", card_problem=event.reason)
    if isinstance(event, Failed):
        return replace(state, mode="card", card_problem=event.detail)
    return state


def site_options(state: AppState) -> tuple[str, ...]:
    """What the body-site list offers at its current stage."""
    stage = state.lesion.stage
    if stage == "side":
        return BODY_SIDES
    if stage == "lesion":
        return LESION_LABELS
    return BODY_SITES


def open_sites(state: AppState) -> AppState:
    """The body-site list, the current site highlighted."""
    index = BODY_SITES.index(state.body_site) if state.body_site in BODY_SITES else 0
    choice = replace(state.lesion, stage="site", picked_site=None, picked_side=None)
    return replace(state, mode="site", site_index=index, lesion=choice)


def site_step(state: AppState, event: Event) -> AppState:
    """The body-site list: move, choose (site, then side, then lesion) or go back."""
    if not isinstance(event, Button):
        return state
    options = site_options(state)
    count = len(options)
    choice = state.lesion
    if event.name == "next":
        return replace(state, site_index=(state.site_index + 1) % count)
    if event.name == "toggle":
        return replace(state, site_index=(state.site_index - 1) % count)
    if event.name in ("capture", "save"):
        picked = options[state.site_index % count]
        if choice.stage == "site":
            stage = "side" if picked in PAIRED_SITES else "lesion"
            side_index = _index_of(BODY_SIDES, choice.side) if picked == state.body_site else 0
            lesion_index = _index_of(LESION_LABELS, choice.lesion)
            index = side_index if stage == "side" else lesion_index
            choice = replace(choice, stage=stage, picked_site=picked, picked_side=None)
            return replace(state, site_index=index, lesion=choice)
        if choice.stage == "side":
            choice = replace(choice, stage="lesion", picked_side=picked)
            return replace(state, site_index=_index_of(LESION_LABELS, choice.lesion), lesion=choice)
        site, side = choice.picked_site, choice.picked_side
        chosen = replace(choice, stage="site", side=side, lesion=picked, picked_site=None)
        text = lesion_text(site, side, picked)
        return enter_preview(
            replace(state, body_site=site, lesion=chosen, message=f"Body site: {text}")
        )
    if event.name == "back":
        if choice.stage == "lesion" and choice.picked_site in PAIRED_SITES:
            back = replace(choice, stage="side")
            return replace(state, site_index=_index_of(BODY_SIDES, choice.picked_side), lesion=back)
        if choice.stage in ("side", "lesion"):
            index = BODY_SITES.index(choice.picked_site) if choice.picked_site in BODY_SITES else 0
            return replace(state, site_index=index, lesion=replace(choice, stage="site"))
        return enter_preview(state)
    return state


def _index_of(options: tuple[str, ...], value: str | None) -> int:
    return options.index(value) if value in options else 0


def ask_save_step(state: AppState, event: Event) -> AppState:
    """ "No patient card read — save without a patient?": save, read the card, or cancel."""
    if not isinstance(event, Button) or state.result is None:
        return state
    if event.name == "save":
        return replace(state, mode="result", commands=(Save(state.result),))
    if event.name == "capture":
        choice = replace(state.lesion, card_for="result")
        return replace(state, mode="card", card_problem="", message="", lesion=choice)
    if event.name == "back":
        return replace(state, mode="result")
    return state


def asks_before_saving(state: AppState) -> bool:
    """Whether Save on this result asks first: an unsaved result without a patient."""
    result = state.result
    return result is not None and not result.patient_ref and result.saved_id is None


def ask_save(state: AppState) -> AppState:
    """Ask (once per save) whether the result on screen is saved without a patient."""
    return replace(state, mode="confirm_save")


def ask_save_view(state: AppState) -> Screen:
    """The question, with the three answers on the buttons."""
    return ErrorScreen(
        problem="notice",
        cause="no_patient",
        title=NO_PATIENT_QUESTION,
        detail="",
        action="Read card: the patient's card is read, then the scan is saved with it. "
        "Save anyway: the scan is saved without a patient; give it one later from History.",
        hints=make_hints(("capture", "Read card"), ("save", "Save anyway"), ("back", "Cancel")),
    )


def card_view(state: AppState) -> Screen:
    """The card screen: the live view, and what to do or why the card was refused."""
    pairs = [("capture", "Read card")]
    if state.patient_ref and not state.lesion.card_for:
        pairs.append(("toggle", "Next patient"))
    pairs.append(("back", "Cancel"))
    current = state.patient_ref or ""
    if state.lesion.card_for == "assign":
        current = ""  # the card is for a saved scan; the live view's patient stays
    return CardScreen(
        frame=state.frame.image if state.frame else None,
        problem=state.card_problem,
        current=current,
        hints=make_hints(*pairs),
    )


def reading_view(state: AppState) -> Screen:
    """While the card is read."""
    return AnalyzingScreen(
        frame=state.frame.image if state.frame else None,
        text="Reading card…",
        title="Patient card",
    )


SITE_TITLES = {"site": "Body site", "side": "Which side?", "lesion": "Which lesion?"}


def site_view(state: AppState) -> Screen:
    """The body-site list at its stage: sites, then sides, then lesion labels."""
    choice = state.lesion
    stage = choice.stage
    current = state.body_site or ""
    title = SITE_TITLES[stage]
    if stage == "side":
        current = choice.side or "" if choice.picked_site == state.body_site else ""
        title = f"{choice.picked_site}: which side?"
    elif stage == "lesion":
        same = (choice.picked_site, choice.picked_side) == (state.body_site, choice.side)
        current = choice.lesion or "" if same else ""
        where = lesion_text(choice.picked_site, choice.picked_side, None)
        title = f"{where}: which lesion?"
    return SiteScreen(
        sites=site_options(state),
        index=state.site_index,
        current=current,
        title=title,
        hints=make_hints(
            ("capture", "Choose"), ("next", "Down"), ("toggle", "Up"), ("back", "Back")
        ),
    )
