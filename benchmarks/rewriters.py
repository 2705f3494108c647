"""Rewriter accuracy: each backend's target caption against the exact one, on a Shapes-PIE suite.

    python benchmarks/rewriters.py SUITE [--backends rules smollm2] [--n 100]

A case counts when the rewriter's caption equals the suite's target caption (the world's exact
caption of the edited scene); errors (a clear "cannot map") count as misses.  Single-change cases only
(types 1-9): multi-change instructions are beyond a one-substitution answer.
"""

from __future__ import annotations

import argparse
import json
import time

from retouch.rewrite import get_rewriter
from retouch.world.suite import load_suite


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("--backends", nargs="+", default=["rules", "smollm2"])
    ap.add_argument("--n", type=int, default=100)
    a = ap.parse_args()
    cases = [c for c in load_suite(a.suite) if c.editing_type_id != 0]
    step = max(1, len(cases) // a.n)
    cases = cases[::step][: a.n]
    out = {}
    for name in a.backends:
        rw = get_rewriter(name)
        ok = errors = 0
        t0 = time.perf_counter()
        for c in cases:
            try:
                ok += rw.rewrite(c.source_caption, c.editing_instruction) == c.target_caption
            except ValueError:
                errors += 1
        out[name] = {
            "n": len(cases),
            "exact": ok / len(cases),
            "errors": errors / len(cases),
            "s_per_case": (time.perf_counter() - t0) / len(cases),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
