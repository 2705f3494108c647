"""The editing table of docs/editing.md: turbo and every baseline on one Shapes-PIE suite.

    python benchmarks/editing.py --seed 777 --out runs/editing-777 [--every-slow 5] [--methods ...] [--handwritten turbo ...]

Writes the suite (700 cases, PIE-Bench proportions, from a seed no model was trained on) when it is
missing, runs ``retouch bench`` for each method with instruction-only inputs, and prints one markdown
table: success, success per edit type, background PSNR / MSE / SSIM (PIE-Bench's convention), GT L1
(MagicBrush), seconds and network evaluations for inversion and edit.  The 50-step methods take
seconds per case on two CPU cores; ``--every-slow K`` runs them on every K-th case (the suite is
ordered by type, so the subset keeps the type proportions), and the table says so in its n column.

``--handwritten METHOD ...`` also writes the hand-written instruction fixture
(tests/fixtures/instructions_handwritten.jsonl: its rows of the ten PIE types, each source scene rendered
by the world renderer) as a suite in OUT/handwritten-suite, runs those methods on it with
instruction-only inputs (the scene reader captions, the default rewriter reads the hand-written
words), and adds a "hand-written" success column next to the templated one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from retouch.eval.bench import BenchConfig, run_bench
from retouch.world.edits import EDIT_TYPES, Change, Edit
from retouch.world.scene import Scene
from retouch.world.suite import IMAGES, MAPPING, case_record, write_suite

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "instructions_handwritten.jsonl"

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


def _changes(src: Scene, tgt: Scene) -> list[Change]:
    """The atomic changes that turn ``src`` into ``tgt`` (a move is a delete and an add)."""
    out = []
    if src.background != tgt.background:
        out.append(Change("background", None, tgt.background))
    if src.style != tgt.style:
        out.append(Change("style", None, tgt.style))
    for slot in range(4):
        a, b = src.object_at(slot), tgt.object_at(slot)
        if a is not None and b is None:
            out.append(Change("delete", slot))
        elif a is None and b is not None:
            out.append(Change("add", None, b))
        elif a is not None and a != b:
            out += [
                Change(k, slot, getattr(b, k))
                for k in ("shape", "color", "size", "pattern", "pose", "emblem")
                if getattr(a, k) != getattr(b, k)
            ]
    return out


def write_handwritten_suite(out: Path, fixture: Path = FIXTURE) -> int:
    """The fixture's edit rows of the ten PIE types as a Shapes-PIE suite in ``out``; returns the number of cases."""
    rows = [json.loads(line) for line in fixture.read_text().splitlines() if line.strip()]
    mapping = {}
    for k, r in enumerate(r for r in rows if r["expect"] == "edit" and r["type_id"] is not None):
        src, tgt = Scene.from_dict(r["source"]), Scene.from_dict(r["target"])
        e = Edit(r["type_id"], src, _changes(src, tgt), r["instruction"])
        assert e.target.same_content(tgt), r["id"]
        case_id = f"{e.type_id}{k:011d}"
        rec = case_record(case_id, e) | {"fixture_id": r["id"]}
        for rel, img in ((Path(IMAGES) / rec["image_path"], e.render_source()), (Path(rec["target_image_path"]), e.render_target())):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out / rel)
        mapping[case_id] = rec
    meta = {"generator": "retouch hand-written instruction fixture", "n": len(mapping), "fixture": str(fixture)}
    (out / "suite.json").write_text(json.dumps(meta))
    (out / MAPPING).write_text(json.dumps(mapping))  # last: a half-written suite is never taken for a whole one
    return len(mapping)


def table(summaries: list[dict], handwritten: dict[str, dict] | None = None) -> str:
    handwritten = handwritten or {}
    types = [EDIT_TYPES[t] for t in sorted(EDIT_TYPES)]
    head = ["method", "n", "success"] + (["hand-written"] if handwritten else []) + [SHORT[t] for t in types]
    head += ["bg PSNR", "bg MSE", "bg SSIM", "GT L1", "s inv", "NFE inv", "s edit", "NFE edit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        per = s["per_type"]
        row = [s["method"] + (f" ({s['options']})" if s.get("options") else ""), str(s["n"]), _f(s["success"], 3)]
        if handwritten:
            hw = handwritten.get(s["method"])
            row.append(f"{hw['success']:.3f} (n={hw['n']})" if hw else "n/a")
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
    ap.add_argument("--methods", nargs="*", default=list(FAST + SLOW), help="templated-suite methods (none: only --handwritten)")
    ap.add_argument("--every-slow", type=int, default=5, help="run the 50-step methods on every k-th case")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE", help="a method setting")
    ap.add_argument("--handwritten", nargs="*", default=[], metavar="METHOD", help="also run these methods on the hand-written fixture")
    a = ap.parse_args()
    out = Path(a.out)
    suite = out / "suite"
    if a.methods and not (suite / "mapping_file.json").is_file():
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
    handwritten: dict[str, dict] = {}
    if a.handwritten:
        hw_suite = out / "handwritten-suite"
        if not (hw_suite / MAPPING).is_file():
            write_handwritten_suite(hw_suite)
        for m in a.handwritten:
            path = out / f"{m}-handwritten.json"
            if path.is_file():
                handwritten[m] = json.loads(path.read_text())
                continue
            cfg = BenchConfig(suite=str(hw_suite), method=m, inputs="instruction", options=options.get(m), json_out=str(path))
            handwritten[m] = run_bench(cfg)
    text = table(summaries, handwritten) if summaries else ""
    if handwritten:
        text += f"\nOn the hand-written instructions ({out / 'handwritten-suite'}):\n\n" + table(list(handwritten.values()))
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
