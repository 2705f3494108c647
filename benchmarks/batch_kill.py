"""``retouch batch`` killed with ``kill -9`` at about half, then rerun: are all outputs there, whole, and computed once?

    python benchmarks/batch_kill.py --n 200 --out runs/batch-kill          # the docs/batch.md numbers

Writes ``n`` Shapes-world scenes and one instruction for each (``retouch.world``: every PIE edit type in
turn) as a jobs file, runs ``retouch batch`` on it in a subprocess with the shipped turbo models,
kills it with SIGKILL once half of the outputs exist, checks what the kill left, reruns the same
command to the end and checks every output and the summary.  Prints a JSON report (also written to
``OUT/report.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_jobs(root: Path, n: int, seed: int) -> Path:
    from retouch.world import random_scene, render_pil
    from retouch.world.edits import sample_edit

    rng = random.Random(f"batch-kill/{seed}")
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        edit = None
        while edit is None:
            scene = random_scene(rng)
            edit = sample_edit(scene, i % 10, rng)
        name = f"inputs/{i:05d}.png"
        render_pil(scene).save(root / name)
        rows.append({"image": name, "instruction": edit.instruction, "output": f"{i:05d}.png"})
    jobs = root / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return jobs


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.png"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default="runs/batch-kill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kill-at", type=float, default=0.5, help="share of outputs after which the first run is killed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ray", default=None, help="pass --ray ADDRESS to both runs")
    a = ap.parse_args()

    from retouch.batch import SUMMARY_NAME, read_record

    root = Path(a.out)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: give a fresh --out")
    jobs = write_jobs(root, a.n, a.seed)
    edits = root / "edits"
    cmd = [sys.executable, "-m", "retouch.cli", "batch", str(jobs), "--out", str(edits), "--threads", str(a.threads)]
    if a.ray:
        cmd += ["--ray", a.ray]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}

    # run 1: killed with SIGKILL once kill_at * n outputs exist
    target = max(1, round(a.kill_at * a.n))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(list(edits.glob("*.png"))) < target:
        if proc.poll() is not None:
            raise SystemExit(f"the batch ended (status {proc.returncode}) before {target} outputs existed")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t_kill = time.perf_counter() - t0
    at_kill = snapshot(edits)
    temps = [p.name for p in edits.iterdir() if p.name.startswith(".")]
    broken_at_kill = []
    for name in at_kill:
        try:
            if read_record(edits / name) is None:
                broken_at_kill.append(name)
        except ValueError:
            broken_at_kill.append(name)

    # run 2: the same command, to the end
    t1 = time.perf_counter()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t_rerun = time.perf_counter() - t1
    summary = json.loads((edits / SUMMARY_NAME).read_text())
    after = snapshot(edits)
    lines = summary["lines"]
    skipped = {e["output"] for e in lines if e["status"] == "skipped"}
    done = {e["output"] for e in lines if e["status"] == "done"}
    valid = 0
    for e in lines:
        try:
            rec = read_record(edits / e["output"])
        except (ValueError, FileNotFoundError):
            continue
        valid += rec is not None
    report = {
        "command": " ".join(cmd),
        "n": a.n,
        "killed_after_s": round(t_kill, 1),
        "outputs_at_kill": len(at_kill),
        "temporary_files_at_kill": len(temps),
        "broken_outputs_at_kill": len(broken_at_kill),
        "rerun_status": rerun.returncode,
        "rerun_s": round(t_rerun, 1),
        "rerun_done": summary["done"],
        "rerun_skipped": summary["skipped"],
        "rerun_errors": summary["error"],
        "rerun_edits_per_s": summary["edits_per_s"],
        "first_run_edits_per_s": round(len(at_kill) / t_kill, 3),
        "outputs": len(after),
        "valid_outputs": valid,
        "skipped_are_the_outputs_at_kill": skipped == set(at_kill),
        "skipped_unchanged": all(after[k] == at_kill[k] for k in at_kill),
        "computed_twice": len(skipped & done),
        "temporary_files_left": len([p for p in edits.iterdir() if p.name.startswith(".")]),
    }
    report["ok"] = (
        report["outputs"] == report["valid_outputs"] == a.n
        and report["broken_outputs_at_kill"] == 0
        and report["skipped_are_the_outputs_at_kill"]
        and report["skipped_unchanged"]
        and report["computed_twice"] == 0
        and summary["done"] + summary["skipped"] == a.n
        and report["temporary_files_left"] == 0
    )
    (root / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
