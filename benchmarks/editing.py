"""The editing table of docs/editing.md: turbo and every baseline on one Shapes-PIE suite.

    python benchmarks/editing.py --seed 777 --out runs/editing-777 [--every-slow 5] [--methods ...]

Writes the suite (700 cases, PIE-Bench proportions, from a seed no model was trained on) when it is
missing, runs ``retouch bench`` for each method with instruction-only inputs, and prints one markdown
table: success, success per edit type, background PSNR / MSE / SSIM (PIE-Bench's convention), GT L1
(MagicBrush), seconds and network evaluations for inversion and edit.  The 50-step methods take
seconds per case on two CPU cores; ``--every-slow K`` runs them on every K-th case (the suite is
ordered by type, so the subset keeps the type proportions), and the table says so in its n column.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retouch.eval.bench import BenchConfig, run_bench
from retouch.world.edits import EDIT_TYPES
from retouch.world.suite import write_suite

FAST = ("identity", "turbo", "ddim4", "ddim4-p2p")
SLOW = ("ddim50", "ddim50-p2p", "ddpm")
SHORT = {
    "random": "rand",
    "change_object": "obj",
    "add_object": "add",
    "delete_object": "del",
    "change_attribute_content": "emb",
    "change_attribute_pose": "pose",
    "change_attribute_color": "col",
    "change_attribute_material": "pat",
    "change_background": "bg",
    "change_style": "sty",
}


def _f(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def table(summaries: list[dict]) -> str:
    types = [EDIT_TYPES[t] for t in sorted(EDIT_TYPES)]
    head = ["method", "n", "success"] + [SHORT[t] for t in types]
    head += ["bg PSNR", "bg MSE", "bg SSIM", "GT L1", "s inv", "NFE inv", "s edit", "NFE edit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        per = s["per_type"]
        row = [s["method"] + (f" ({s['options']})" if s.get("options") else ""), str(s["n"]), _f(s["success"], 3)]
        row += [_f(per.get(t, {}).get("success"), 2) for t in types]
        row += [
            _f(s["bg_psnr"], 2),
            _f(s["bg_mse"], 5),
            _f(s["bg_ssim"], 4),
            _f(s["gt_l1"], 4),
            _f(s["s_per_inversion"], 3),
            _f(s["nfe_per_inversion"], 0),
            _f(s["s_per_edit"], 3),
            _f(s["nfe_per_edit"], 0),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--n", type=int, default=700)
    ap.add_argument("--out", default="runs/editing-777")
    ap.add_argument("--methods", nargs="+", default=list(FAST + SLOW))
    ap.add_argument("--every-slow", type=int, default=5, help="run the 50-step methods on every k-th case")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE", help="a method setting")
    a = ap.parse_args()
    out = Path(a.out)
    suite = out / "suite"
    if not (suite / "mapping_file.json").is_file():
        write_suite(suite, n=a.n, seed=a.seed)
    options: dict[str, dict] = {}
    for item in a.set:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        try:
            options.setdefault(name, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            options.setdefault(name, {})[key] = value
    summaries = []
    for m in a.methods:
        path = out / f"{m}.json"
        if path.is_file():
            summaries.append(json.loads(path.read_text()))
            continue
        every = a.every_slow if m in SLOW else 1
        cfg = BenchConfig(suite=str(suite), method=m, inputs="instruction", every=every, options=options.get(m), json_out=str(path))
        summaries.append(run_bench(cfg))
    text = table(summaries)
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
