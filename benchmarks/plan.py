"""Benchmark: plan every paper study together, as a researcher would before a campaign.

Each study file in experiments/ is planned with ``seeds: [0, 1, 2]`` added (the paper's noise bands need
repeated seeds), which takes the campaign past 300 runs. Prints the wall time of loading, expanding,
hashing and costing all of them, and the run counts. Run: ``.venv/bin/python benchmarks/plan.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def main() -> None:
    t0 = time.perf_counter()
    from i1lab.plan.planner import expand, make_plan, report
    from i1lab.spec import load_study

    t_import = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for path in sorted(EXPERIMENTS.glob("*.yaml")):
            seeded = Path(tmp) / path.name
            seeded.write_text(f"study: {path.stem}\nextends: {path}\nseeds: [0, 1, 2]\n")
            files.append(seeded)
        t1 = time.perf_counter()
        studies = [load_study(f) for f in files]
        plans = [make_plan(s, expand(s), {}, None) for s in studies]
        payload = report(plans)
        t_plan = time.perf_counter() - t1
    planned = sum(len(p.runs) for p in plans)
    print(
        f"studies={len(plans)} planned_runs={planned} unique_runs={payload['summary']['runs']} "
        f"import_s={t_import:.2f} plan_s={t_plan:.2f} total_s={t_import + t_plan:.2f} "
        f"accelerator_hours={payload['totals']['accelerator_hours']:,.0f}"
    )


if __name__ == "__main__":
    main()
