"""Mixing weights over data sources (docs/design-space.md §11). Pure functions."""

from __future__ import annotations

from i1lab.spec.run import DataSpec, SourceSpec


def kept_sources(data: DataSpec) -> list[SourceSpec]:
    """The sources left after ``keep`` and ``remove`` (by source name or by group)."""
    return data.kept_sources()


def effective_count(source: SourceSpec, subset_count: int | None) -> int:
    """Unique images a source contributes: its count, or the per-source subset size when smaller."""
    return min(source.count, subset_count) if subset_count else source.count


def mixing_weights(data: DataSpec) -> dict[str, float]:
    """Normalised sampling weight per kept source, by the spec's strategy."""
    sources = kept_sources(data)
    raw: dict[str, float] = {}
    for s in sources:
        count = effective_count(s, data.subset_count)
        if data.mixing.strategy == "equal":
            raw[s.name] = 1.0
        elif data.mixing.strategy == "capped":
            assert data.mixing.cap is not None
            raw[s.name] = float(min(count, data.mixing.cap))
        else:
            raw[s.name] = float(count)
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}
