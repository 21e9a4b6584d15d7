"""Fault knobs of the local OpenSearch engine: the ways a real rebuild or query goes wrong, on demand.

Settable at runtime (tests: ``server.engine.faults``), from the server's JSON config (``faults``), the
CLI (``--fail-next-build`` ...) and the demo (``--fault opensearch.<knob>=<value>``). One-shot knobs
are consumed by the build or query that uses them; the others stay until changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EngineFaults", "ENGINE_FAULT_KNOBS"]


@dataclass
class EngineFaults:
    """Fault injection for :class:`~localcloud.opensearch.engine.LocalEngine`.

    ``fail_next_build``: the next build fails at ``build_index`` with this message.
    ``stall_next_build``: the next build stops at ``build_index`` (status ``building``, no node change)
    until :meth:`LocalEngine.release_stalled_builds` or the engine closes.
    ``stop_next_generation``: the next build ends ``stopped`` instead of switching.
    ``hold_switch_next_build``: the next build reaches ``ready`` but its switch never happens: the
    task stays ``running`` at its ``switch`` node and the old generation keeps answering, until
    ``ForceSwitch(fsmId)`` or the engine closes (the field's "engine never received the switch target").
    ``register_delay_s``: a reindex's generation and task appear in the listings only this long after
    the call answered (the API gives no generation id; the cloud registers it asynchronously).
    ``switch_during_next_query``: the next query runs its first phase (search) on the live generation;
    then the build waiting to switch goes live, and the second phase (summaries) reads the new one,
    as a query racing a switch does. Summaries fetched by docid then find nothing; by pk they do.
    ``phase_delay_s``: a sleep before each phase, so every status can be observed.

    Push API (:mod:`localcloud.opensearch.pushing`):
    ``drop_next_pushes``: the next N push requests that pass every check answer OK but are neither
    logged nor applied ("accepted but dropped": OK means received, and these were lost).
    ``push_apply_delay_s``: every pushed document is applied only this long after it was received
    ("applied late"); read when the applier looks, so changing it affects what is pending.
    ``throttle_next_pushes``: the next N push requests answer 429 (code 3013, "push rate exceeds app
    quota") before their body is read, whatever the rate.
    """

    fail_next_build: str | None = None
    stall_next_build: bool = False
    stop_next_generation: bool = False
    hold_switch_next_build: bool = False
    switch_during_next_query: bool = False
    register_delay_s: float = 0.0
    phase_delay_s: float = 0.0
    drop_next_pushes: int = 0
    push_apply_delay_s: float = 0.0
    throttle_next_pushes: int = 0
    stall_release: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take(self, name: str) -> Any:
        """Read a one-shot knob and reset it."""
        with self._lock:
            value = getattr(self, name)
            setattr(self, name, None if name == "fail_next_build" else False)
            return value

    def take_one(self, name: str) -> bool:
        """Consume one unit of a counting knob (``drop_next_pushes``, ``throttle_next_pushes``): was one left?"""
        with self._lock:
            left = int(getattr(self, name) or 0)
            if left <= 0:
                return False
            setattr(self, name, left - 1)
            return True


ENGINE_FAULT_KNOBS = (
    "fail_next_build", "stall_next_build", "stop_next_generation", "hold_switch_next_build",
    "switch_during_next_query", "register_delay_s", "phase_delay_s", "drop_next_pushes", "push_apply_delay_s",
    "throttle_next_pushes",
)
