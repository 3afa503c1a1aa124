"""The patient sub-flow: read a patient's card, and choose the body site."""

from __future__ import annotations

from dataclasses import replace

from device.app.events import Button, CardRead, CardRefused, Event, Failed, Frame, ReadCard
from device.app.patient import BODY_SITES
from device.app.state import AppState, enter_preview
from device.app.view_parts import make_hints
from device.ui.screens import AnalyzingScreen, CardScreen, Screen, SiteScreen


def card_step(state: AppState, event: Event) -> AppState:
    """The card screen: read it, clear the patient, or cancel."""
    if isinstance(event, Frame):
        return replace(state, frame=event)
    if isinstance(event, Button):
        if event.name == "capture":
            return replace(state, mode="reading", commands=(ReadCard(),), warning="")
        if event.name == "toggle" and state.patient_ref:
            cleared = replace(
                state,
                patient_ref=None,
                body_site=None,
                message="Patient cleared: scan the next patient's card",
            )
            return enter_preview(cleared)
        if event.name == "back":
            return enter_preview(state)
    return state


def reading_step(state: AppState, event: Event) -> AppState:
    """While the card is read: the patient it holds, or why not."""
    if isinstance(event, CardRead):
        same = event.patient_ref == state.patient_ref
        site = state.body_site if same else None  # a new patient starts without a site
        read = replace(
            state,
            patient_ref=event.patient_ref,
            body_site=site,
            card_problem="",
            message="Patient card read" + ("" if site else ": choose the body site"),
        )
        return enter_preview(read)
    if isinstance(event, CardRefused):
        return replace(state, mode="card", card_problem=event.reason)
    if isinstance(event, Failed):
        return replace(state, mode="card", card_problem=event.detail)
    return state


def site_step(state: AppState, event: Event) -> AppState:
    """The body-site list: move, choose or cancel."""
    if not isinstance(event, Button):
        return state
    count = len(BODY_SITES)
    if event.name == "next":
        return replace(state, site_index=(state.site_index + 1) % count)
    if event.name == "toggle":
        return replace(state, site_index=(state.site_index - 1) % count)
    if event.name in ("capture", "save"):
        site = BODY_SITES[state.site_index]
        return enter_preview(replace(state, body_site=site, message=f"Body site: {site}"))
    if event.name == "back":
        return enter_preview(state)
    return state


def card_view(state: AppState) -> Screen:
    """The card screen: the live view, and what to do or why the card was refused."""
    pairs = [("capture", "Read card")]
    if state.patient_ref:
        pairs.append(("toggle", "Next patient"))
    pairs.append(("back", "Cancel"))
    return CardScreen(
        frame=state.frame.image if state.frame else None,
        problem=state.card_problem,
        current=state.patient_ref or "",
        hints=make_hints(*pairs),
    )


def reading_view(state: AppState) -> Screen:
    """While the card is read."""
    return AnalyzingScreen(
        frame=state.frame.image if state.frame else None,
        text="Reading card…",
        title="Patient card",
    )


def site_view(state: AppState) -> Screen:
    """The body-site list."""
    return SiteScreen(
        sites=BODY_SITES,
        index=state.site_index,
        current=state.body_site or "",
        hints=make_hints(
            ("capture", "Choose"), ("next", "Down"), ("toggle", "Up"), ("back", "Cancel")
        ),
    )
