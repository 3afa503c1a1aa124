"""The controller's answer to a battery and storage reading: keep it for the live view,
and shut down cleanly when the battery is about to run out."""

from __future__ import annotations

from dataclasses import replace

from device.app.events import Exit, PowerOff, PowerStatus
from device.app.state import AppState


def power_step(state: AppState, event: PowerStatus) -> AppState:
    """``state`` with the new status; on a critical battery, the battery shutdown.

    The shutdown is the confirmed-shutdown path (power off on a Pi, else leave the
    program): saved scans are already durable, and an unsaved result is lost as it
    would be when the power went.
    """
    state = replace(state, device_status=event.status)
    if not event.critical or state.mode == "exit":
        return state
    command = PowerOff() if state.poweroff else Exit()
    return replace(state, mode="exit", shutdown_reason="battery", commands=(command,))
