"""Kill `retouch world bench`, `retouch bench` and `retouch train` (a tiny recipe) with SIGKILL at N random
points each (default 20), check every file left behind, rerun, and compare with an uninterrupted run
(the harness: tests/reliability/kill_harness.py; the results table in docs/reliability.md).

    python benchmarks/kill_points.py --points 20 --seed 16 --out runs/kill-points
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.kill_harness import kill_points  # noqa: E402
from tests.reliability.test_kill import commands, reference  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--out", default="runs/kill-points")
    ap.add_argument("--only", default=None, help="one of world-bench, bench, train")
    a = ap.parse_args()
    root = Path(a.out).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    summary = {}
    for name, cmd in commands(root).items():
        if a.only and name != a.only:
            continue
        t0 = time.perf_counter()
        ref, events, seconds = reference(cmd)
        records = kill_points(cmd, a.points, random.Random(f"{a.seed}/{name}"), ref, events, seconds)
        summary[name] = {
            "points": len(records),
            "killed": sum(r["killed"] for r in records),
            "finished_before_kill": sum(not r["killed"] for r in records),
            "torn_files": sum(len(r["torn"]) for r in records),
            "temps_left_after_kills": sum(r["temps_left"] for r in records),
            "reference_write_events": events,
            "reference_seconds": round(seconds, 2),
            "rerun_equals_uninterrupted": True,  # kill_points raises otherwise
            "seconds": round(time.perf_counter() - t0, 1),
            "records": records,
        }
        print(json.dumps({k: v for k, v in summary[name].items() if k != "records"} | {"command": name}), flush=True)
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {root / 'summary.json'}")


if __name__ == "__main__":
    main()
