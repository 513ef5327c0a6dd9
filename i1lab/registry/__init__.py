"""The SQL registry: the source of truth for studies, runs, checkpoints and scores."""

from i1lab.registry.store import (
    MemberRecord,
    PlannedMember,
    Registry,
    RunRecord,
    ScoreRecord,
    StudyRecord,
)

__all__ = ["MemberRecord", "PlannedMember", "Registry", "RunRecord", "ScoreRecord", "StudyRecord"]
