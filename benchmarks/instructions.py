"""Instruction -> target caption on hand-written instructions: exact, wrong and refused rates per rewriter.

    python benchmarks/instructions.py [--backends reader rules smollm2] [--every-slow 3] [--generated 2000] [--json OUT]

The fixture (tests/fixtures/instructions_handwritten.jsonl) holds hand-written instructions, each with its
source scene and either the exact target scene or the expectation that the rewriter refuses (an ambiguous
reference, which the refusal must name, or an edit the world cannot make).  For each backend and row:

- exact: the expected outcome (the target caption exactly; or, for a row that must be refused, a
  refusal, naming every candidate position when the row lists candidates),
- wrong: a well-formed caption that is not the expected one (for a must-refuse row: any caption),
- refused: a clear error where an edit was expected (or a refusal that does not name the candidates).

Rates are over all rows and, separately, over the rows that expect an edit and those that expect a
refusal, and per fixture part (A: the reader was corrected on it; B: measured once, blind).  Seconds are
per instruction (model loading excluded).  ``--every-slow K`` runs the slow backends (smollm2) on every
K-th row.  ``--generated N`` also scores N instructions of the phrasing generator's held-out split
(``world.phrasing``; N/3 of them multi-edit) for each fast backend.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from retouch.rewrite import get_rewriter
from retouch.world.captions import detailed_caption

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "instructions_handwritten.jsonl"
SLOW = ("smollm2",)
PLACE = {"tl": "top left", "tr": "top right", "bl": "bottom left", "br": "bottom right"}


def load_fixture(path: Path = FIXTURE) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scenes = [r["scene"] for r in rows]
    part_b = scenes.index("P") if "P" in scenes else len(rows)
    for k, r in enumerate(rows):
        r["part"] = "A" if k < part_b else "B"
    return rows


def outcome(row: dict, answer: str | None, error: str | None) -> str:
    """'exact' | 'wrong' | 'refused' for one row (see the module docstring)."""
    if row["expect"] == "edit":
        if answer is None:
            return "refused"
        return "exact" if answer == row["target_caption"] else "wrong"
    if answer is not None:
        return "wrong"
    return "exact" if all(PLACE[c] in error for c in row["candidates"]) else "refused"


def score(rewriter, rows: list[dict]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    t0 = time.perf_counter()
    for r in rows:
        try:
            answer, error = rewriter.rewrite(r["source_caption"], r["instruction"]), None
        except (ValueError, RuntimeError) as e:
            answer, error = None, str(e)
        o = outcome(r, answer, error)
        for key in ("all", r["expect"], "part " + r["part"]):
            counts.setdefault(key, {"exact": 0, "wrong": 0, "refused": 0})[o] += 1
    seconds = (time.perf_counter() - t0) / max(1, len(rows))
    out = {}
    for key, c in counts.items():
        n = sum(c.values())
        out[key] = {"n": n} | {k: round(v / n, 4) for k, v in c.items()}
    return out | {"ms_per_instruction": round(1000 * seconds, 2)}


def generated_rows(n: int) -> list[dict]:
    from retouch.world.phrasing import generate_instructions

    rows = []
    for ex in generate_instructions(n, split="heldout"):
        rows.append(
            {
                "instruction": ex.instruction,
                "source_caption": detailed_caption(ex.source),
                "expect": "edit",
                "target_caption": detailed_caption(ex.target),
                "part": "gen",
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["reader", "rules", "smollm2"])
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--every-slow", type=int, default=3, help="run the slow backends (smollm2) on every k-th row")
    ap.add_argument("--generated", type=int, default=0, help="also score N held-out generator instructions (fast backends)")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    rows = load_fixture(Path(a.fixture))
    results: dict = {}
    for name in a.backends:
        rw = get_rewriter(name)
        subset = rows[:: a.every_slow] if name in SLOW else rows
        if name == "smollm2":
            rw._load()  # load the model outside the timing
        results[name] = {"fixture": score(rw, subset), "fixture_rows": len(subset)}
        if a.generated and name not in SLOW:
            results[name]["generated_heldout"] = score(rw, generated_rows(a.generated))
        print(name, json.dumps(results[name]), flush=True)
    print(table(results))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(results, indent=2))


def table(results: dict) -> str:
    head = (
        "| rewriter | rows | exact | wrong | refused | edits: exact / wrong / refused | must-refuse: refused right / answered "
        "| part B exact | ms / instruction |"
    )
    lines = [head, "|" + "---|" * 9]
    for name, res in results.items():
        f = res["fixture"]
        e, r = f.get("edit", {}), f.get("refuse", {})
        lines.append(
            f"| `{name}` | {f['all']['n']} | {f['all']['exact']:.3f} | {f['all']['wrong']:.3f} | {f['all']['refused']:.3f} | "
            f"{e.get('exact', 0):.3f} / {e.get('wrong', 0):.3f} / {e.get('refused', 0):.3f} | "
            f"{r.get('exact', 0):.3f} / {r.get('wrong', 0):.3f} | {f.get('part B', {}).get('exact', float('nan')):.3f} | "
            f"{f['ms_per_instruction']:.1f} |"
        )
    gen = {k: v["generated_heldout"] for k, v in results.items() if "generated_heldout" in v}
    if gen:
        lines += ["", "| rewriter | generated held-out rows | exact | wrong | refused | ms / instruction |", "|---|---|---|---|---|---|"]
        for name, g in gen.items():
            a = g["all"]
            lines.append(
                f"| `{name}` | {a['n']} | {a['exact']:.3f} | {a['wrong']:.3f} | {a['refused']:.3f} | {g['ms_per_instruction']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
