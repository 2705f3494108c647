"""Faults mid-write (issue 16): real subprocesses of `retouch world bench`, `retouch bench` and `retouch train`
(a tiny recipe), each SIGKILLed at 3 random points (chained: each rerun may be the next one killed);
after every kill each file present is whole, and the final rerun's results equal an uninterrupted run's.
benchmarks/kill_points.py runs the same with 20 points per command (docs/reliability.md)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.reliability.kill_harness import Command, bench_results, check_whole, digests, kill_points, run, temps

POINTS = 3


def commands(root: Path) -> dict[str, Command]:
    """The three commands, writing under ``root`` (the bench's suite is written here first)."""
    from retouch.world.suite import write_suite

    suite = root / "bench-suite"
    if not (suite / "mapping_file.json").is_file():
        write_suite(suite, n=20, seed=4)
    recipe = root / "tiny-reader.json"
    recipe.write_text(
        json.dumps(
            {
                "task": "scene-reader",
                "out": str(root / "train"),
                "steps": 12,
                "batch_size": 4,
                "width": 4,
                "ckpt_every": 1,
                "eval_n": 8,
                "workers": 0,
            }
        )
    )
    return {
        "world-bench": Command(
            "world bench",
            ["world", "bench", "--out", str(root / "world"), "--n", "30", "--seed", "5"],
            root / "world",
            results=lambda d: digests(d),
            finished=lambda d: (d / "mapping_file.json").is_file(),  # a rerun over a finished suite is refused
        ),
        "bench": Command(
            "bench",
            ["bench", str(suite), "--method", "identity", "--json", str(root / "bench" / "identity.json")],
            root / "bench",
            results=lambda d: bench_results(d / "identity.json"),
            finished=lambda d: (d / "identity.json").is_file(),
        ),
        "train": Command(
            "train",
            ["train", str(recipe)],
            root / "train",
            results=lambda d: digests(d, skip=("checkpoint.pt",)),  # weights, config, eval: byte for byte
            finished=lambda d: (d / "eval.json").is_file(),
        ),
    }


def reference(cmd: Command) -> tuple[object, int, float]:
    """An uninterrupted run in the command's own folder: (results, write events, seconds); the folder is then emptied."""
    import shutil

    r = run(cmd)
    assert r["rc"] == 0, r["stderr"]
    assert not check_whole(cmd.out) and not temps(cmd.out)
    res = cmd.results(cmd.out)
    shutil.rmtree(cmd.out)
    return res, r["events"], r["seconds"]


@pytest.mark.parametrize("name", ["world-bench", "bench", "train"])
def test_kill_at_random_points(name, tmp_path):
    cmd = commands(tmp_path)[name]
    ref, events, seconds = reference(cmd)
    records = kill_points(cmd, POINTS, random.Random(f"kill/{name}"), ref, events, seconds)
    assert len(records) == POINTS
