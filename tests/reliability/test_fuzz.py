"""The CI pass of the fuzz targets (fuzz/): every checked-in corpus file (seeds and crash reproducers) through
its target, a few hundred seeded mutations of them per target, and one short real atheris run of the runner.
Only the documented exception types may leave a target (fuzz/targets.py).  The long runs: docs/reliability.md."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fuzz import targets  # noqa: E402

MUTATIONS = 150


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """A few byte-level edits of the kinds libFuzzer makes: flip, set, insert, delete, truncate, splice a run."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[min(i, len(b) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, ord("-"), ord("9"), ord('"')))
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and b:
            del b[i : i + rng.randint(1, 16)]
        elif op == 4:
            del b[i:]
        elif op == 5 and len(b) > 8:
            j = rng.randrange(len(b) - 4)
            b[i:i] = b[j : j + rng.randint(1, 32)]
    return bytes(b)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_corpus_and_mutations(name):
    targets.quiet()
    files = sorted(p for p in targets.corpus_dir(name).glob("*") if p.is_file())
    assert files, f"no corpus for {name}"
    for p in files:
        targets.run_one(name, p.read_bytes())  # raises on anything but the documented errors
    rng = random.Random(f"fuzz/{name}")
    seeds = [p.read_bytes() for p in files]
    for _ in range(MUTATIONS):
        data = _mutate(rng.choice(seeds), rng)
        try:
            targets.run_one(name, data)
        except Exception as e:  # report the input that broke it
            raise AssertionError(f"{name}: {type(e).__name__}: {e} on {data[:200]!r}") from e


def test_the_runner_fuzzes():
    pytest.importorskip("atheris")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), "rle", "-runs=1000", "-seed=1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 1000 runs" in r.stderr
