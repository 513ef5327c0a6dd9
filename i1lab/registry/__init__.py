"""The SQL registry: the source of truth for studies, runs, checkpoints and scores.

:class:`Registry` is the one handle on it, composed of one part per subject, each in its module: studies
and plans (:mod:`~i1lab.registry.studies`), imports (:mod:`~i1lab.registry.imports`), runs, checkpoints,
artifacts and events (:mod:`~i1lab.registry.runs`), scores (:mod:`~i1lab.registry.scores`), leases
(:mod:`~i1lab.registry.leases`, the holder's half in :mod:`~i1lab.registry.lease_holder`), evaluation
steps and their claims (:mod:`~i1lab.registry.evaluations`) and scheduling
policy (:mod:`~i1lab.registry.scheduling`), over the engine and sessions of :mod:`~i1lab.registry.base`.
Callers get the Pydantic records of :mod:`~i1lab.registry.records`.
"""

from i1lab.registry.evaluations import EvaluationsMixin
from i1lab.registry.imports import ImportsMixin
from i1lab.registry.records import (
    EvaluationRecord,
    EvaluationRef,
    ExistingRun,
    MemberRecord,
    PlannedMember,
    PromptScoreRecord,
    RunRecord,
    ScoreRecord,
    StudyRecord,
)
from i1lab.registry.scheduling import SchedulingMixin


class Registry(ImportsMixin, EvaluationsMixin, SchedulingMixin):
    """A handle on the registry database (SQLite under ``$I1LAB_HOME`` or ``$I1LAB_DATABASE_URL``)."""


__all__ = [
    "EvaluationRecord",
    "EvaluationRef",
    "ExistingRun",
    "MemberRecord",
    "PlannedMember",
    "PromptScoreRecord",
    "Registry",
    "RunRecord",
    "ScoreRecord",
    "StudyRecord",
]
