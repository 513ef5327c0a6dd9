"""The cost of a run recorded without a planned one (imported, or from an older registry): its
accelerator-hours from its resolved spec, as the planner would have costed it. ``i1lab dashboard`` hands
this to the dashboard, which imports no planning itself."""

from __future__ import annotations

import threading
from typing import Any

_ESTIMATES: dict[str, float | None] = {}  # run hash -> hours (a run's spec never changes)
_ESTIMATES_LOCK = threading.Lock()


def estimate_hours(run_hash: str, spec: dict[str, Any]) -> float | None:
    """Accelerator-hours of a run from its resolved spec (``i1lab.plan.cost``); None if it cannot be
    costed."""
    with _ESTIMATES_LOCK:
        if run_hash in _ESTIMATES:
            return _ESTIMATES[run_hash]
    hours: float | None
    try:
        from i1lab.plan.cost import run_cost
        from i1lab.spec.model import model_config
        from i1lab.spec.run import RunSpec

        rs = RunSpec.model_validate(spec)
        hours = float(run_cost(rs, model_config(rs)).accelerator_hours)
    except Exception:  # an old or foreign spec: shown as not costed
        hours = None
    with _ESTIMATES_LOCK:
        _ESTIMATES[run_hash] = hours
    return hours
