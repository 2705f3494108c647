"""Kill tests: run a real ``retouch`` command in a subprocess, SIGKILL it at a random point, check that every
file it left is whole, run it again, and compare the final results with an uninterrupted run.

A kill point is either a random moment of the run (uniform over 90% of the uninterrupted run's time) or
"d milliseconds (0-50) after the k-th write event": the harness polls the output folder every few
milliseconds and counts each new (file, modification time) it sees; k is drawn from 1 to the number of
events the uninterrupted run showed.  Reruns go into
the same folder, so the kills chain: each rerun may itself be the next killed run, and the last one runs
to the end.  Used by tests/reliability/test_kill.py (3 kill points per command) and
benchmarks/kill_points.py (20).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from retouch.atomic import is_temp

TIMING_KEYS = ("s_per_edit", "s_per_inversion")  # wall-clock columns of `retouch bench`: differ run to run


def check_whole(folder: Path) -> list[str]:
    """Every file under ``folder`` (temporaries of retouch.atomic aside) opened and checked by its kind;
    returns the problems found (empty: every file is whole)."""
    problems = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or is_temp(p) or any(is_temp(q) for q in p.parents):
            continue
        try:
            _check_file(p)
        except Exception as e:  # any failure to read back is a torn file
            problems.append(f"{p}: {type(e).__name__}: {e}")
    return problems


def _check_file(p: Path) -> None:
    suffix = p.suffix.lower()
    if suffix == ".png":
        from PIL import Image

        with Image.open(p) as im:
            im.load()
            assert im.width > 0 and im.height > 0
    elif suffix == ".json":
        json.loads(p.read_bytes())
    elif suffix == ".csv":
        rows = list(csv.reader(p.read_text().splitlines()))
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows), "ragged or empty CSV"
    elif suffix == ".md":
        assert p.read_text().endswith("\n"), "markdown without its last line"
    elif suffix == ".safetensors":
        from safetensors.torch import load_file

        load_file(str(p))
    elif suffix == ".pt":
        import torch

        torch.load(p, weights_only=True, map_location="cpu")
    else:
        p.read_bytes()


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp(p)]


def digests(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every whole file under ``folder`` by relative path (``skip``: names left out)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not is_temp(p) and p.name not in skip
    }


def bench_results(json_path: Path) -> dict:
    """`retouch bench`'s summary and per-case rows without the wall-clock columns."""
    summary = json.loads(json_path.read_text())

    def strip(d: dict) -> dict:
        return {k: (strip(v) if isinstance(v, dict) else v) for k, v in d.items() if k not in TIMING_KEYS}

    rows = list(csv.DictReader(json_path.with_suffix(".csv").read_text().splitlines()))
    return {"summary": strip(summary), "rows": [strip(r) for r in rows]}


@dataclass
class Command:
    """One command under test: its argv (after ``retouch``), the folder it writes, and what "the same
    results" means for it."""

    name: str
    argv: list[str]
    out: Path
    results: Callable[[Path], object]
    finished: Callable[[Path], bool]  # whether a run that was killed had in fact completed
    env: dict = field(default_factory=dict)


def _env(extra: dict) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"} | extra)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _events(folder: Path, seen: dict) -> int:
    """New (file, mtime) pairs under ``folder`` since the last call (``seen`` is updated)."""
    n = 0
    if not folder.exists():
        return 0
    for p in folder.rglob("*"):
        try:
            st = p.stat()
        except FileNotFoundError:  # renamed away between listing and stat
            continue
        if p.is_file() and seen.get(str(p)) != st.st_mtime_ns:
            seen[str(p)] = st.st_mtime_ns
            n += 1
    return n


def run(cmd: Command, kill_after: tuple[int, float] | None = None, timeout: float = 600.0) -> dict:
    """Run ``cmd``; with ``kill_after=(k, d)`` SIGKILL it ``d`` seconds after the k-th write event.
    Returns {"killed": bool, "rc", "events", "seconds", "stderr"}."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retouch.cli", *cmd.argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(cmd.env),
        start_new_session=True,
    )
    seen: dict = {}
    _events(cmd.out, seen)  # files already there are no events of this run
    events, killed, fire_at = 0, False, None
    if kill_after is not None and kill_after[0] == 0:
        fire_at = time.perf_counter() + kill_after[1]
    while proc.poll() is None:
        events += _events(cmd.out, seen)
        if kill_after is not None and fire_at is None and events >= kill_after[0]:
            fire_at = time.perf_counter() + kill_after[1]
        if fire_at is not None and time.perf_counter() >= fire_at:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        if time.perf_counter() - t0 > timeout:
            os.kill(proc.pid, signal.SIGKILL)
            raise TimeoutError(f"{cmd.name} ran past {timeout} s")
        time.sleep(0.003)
    _, err = proc.communicate()
    events += _events(cmd.out, seen)
    return {
        "killed": killed and proc.returncode == -signal.SIGKILL,
        "rc": proc.returncode,
        "events": events,
        "seconds": time.perf_counter() - t0,
        "stderr": err.decode(errors="replace")[-2000:],
    }


def kill_points(cmd: Command, n: int, rng: random.Random, reference: object, reference_events: int, reference_seconds: float) -> list[dict]:
    """``n`` chained kill points on ``cmd``, each followed by a whole-file check, then a run to the end whose
    results must equal ``reference`` (an uninterrupted run's).  Returns one record per kill point;
    raises AssertionError on a torn file, a failed rerun or different results."""
    import shutil

    records = []
    for i in range(n):
        # half the points at a random moment of the run (start-up, model loads, the work), half within a few
        # milliseconds of a random write (where a torn file would be born)
        if rng.random() < 0.5 or reference_events == 0:
            k, d = 0, rng.uniform(0, 0.9 * reference_seconds)
        else:
            k, d = rng.randint(1, reference_events), rng.uniform(0, 0.05)
        r = run(cmd, kill_after=(k, d))
        torn = check_whole(cmd.out)
        rec = {"point": i + 1, "after_event": k, "delay_s": round(d, 3), "killed": r["killed"], "rc": r["rc"], "torn": torn}
        rec["temps_left"] = len(temps(cmd.out))
        records.append(rec)
        assert not torn, f"{cmd.name}: torn files after kill point {rec}"
        if not r["killed"]:
            assert r["rc"] == 0, f"{cmd.name} failed instead of being killed: {r['stderr']}"
        if cmd.finished(cmd.out):
            # complete before the kill landed (its last write is there): the same results, then start over, so
            # that the next point falls in a whole run again (not in a resumed run's few last steps)
            assert cmd.results(cmd.out) == reference, f"{cmd.name}: a finished output differs from the uninterrupted run's"
            rec["finished_before_kill"] = True
            shutil.rmtree(cmd.out)
    r = run(cmd)
    assert r["rc"] == 0 and not r["killed"], f"{cmd.name}: the rerun failed: {r['stderr']}"
    assert not check_whole(cmd.out) and not temps(cmd.out), f"{cmd.name}: torn or temporary files after the rerun"
    assert cmd.results(cmd.out) == reference, f"{cmd.name}: the rerun's results differ from the uninterrupted run's"
    return records
