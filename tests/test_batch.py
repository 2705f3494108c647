"""``retouch batch``: jobs files and paired folders, errors per line, resume after ``kill -9``, and Ray.

Every edit runs the real turbo (and ddim4) code on the tiny random Shapes-layout generator of the
model tests (no shipped weights), with captions given, so that an edit costs a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch import batch as batch_mod
from retouch.batch import SUMMARY_NAME, read_record
from retouch.cli import main
from tests.methods.conftest import tiny_inversion_dir  # noqa: F401  (fixtures, re-exported)
from tests.models.conftest import tiny_shapes_dir  # noqa: F401

SRC = "a red circle on a blue sky"
TARGETS = ["a green square on a blue sky", "a red star on green grass", "a blue heart on a brick wall"]


def _write_images(folder: Path, n: int, size: int = 24) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size + 4 * i, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _jobs(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _model_args(model: Path) -> list[str]:
    return ["--model", str(model), "--set", "captioner=null"]


def _summary(out: Path) -> dict:
    return json.loads((out / SUMMARY_NAME).read_text())


def _status(summary: dict) -> dict[int, str]:
    return {e["line"]: e["status"] for e in summary["lines"]}


@pytest.fixture(scope="module")
def model(tiny_shapes_dir, tiny_inversion_dir) -> Path:  # noqa: F811
    return tiny_shapes_dir


@pytest.fixture(scope="module")
def good_jobs(tmp_path_factory) -> Path:
    """Five edits of two images, one of them by ddim4 with a mask and one with a strength."""
    root = tmp_path_factory.mktemp("jobs")
    a, b = _write_images(root / "in", 2)
    mask = np.zeros((24, 24), np.uint8)
    mask[4:14, 6:18] = 255
    Image.fromarray(mask, "L").save(root / "in" / "mask0.png")
    rows = [
        {"image": "in/img0.png", "source_prompt": SRC, "prompt": TARGETS[0], "output": "a0.png"},
        {"image": "in/img0.png", "source_prompt": SRC, "target_prompt": TARGETS[1], "output": "a1.png", "strength": 0.5},
        {"image": "in/img1.png", "source_prompt": SRC, "prompt": TARGETS[2]},
        {"image": "in/img0.png", "source_prompt": SRC, "prompt": TARGETS[2], "mask": "in/mask0.png", "output": "sub/masked.png", "seed": 7},
        {"image": "in/img1.png", "source_prompt": SRC, "prompt": TARGETS[0], "method": "ddim4", "output": "d.png"},
    ]
    return _jobs(root / "jobs.jsonl", rows)


@pytest.fixture(scope="module")
def local_run(good_jobs, model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    assert main(["batch", str(good_jobs), "--out", str(out), *_model_args(model)]) == 0
    return out


# -- errors before any model loads ------------------------------------------------------------------
def test_bad_lines_fail_alone_with_their_line_numbers_before_any_model_loads(tmp_path, monkeypatch, capsys):
    (img,) = _write_images(tmp_path / "in", 1)
    Image.new("RGBA", (24, 24), (0, 0, 0, 0)).save(tmp_path / "in" / "clear.png")
    Image.new("L", (10, 10), 255).save(tmp_path / "in" / "small_mask.png")
    jobs = _jobs(
        tmp_path / "jobs.jsonl",
        [
            '{"image": "in/img0.png", "prompt": ',  # 1: not JSON
            {"image": "in/missing.png", "prompt": "x"},  # 2
            {"image": "in/img0.png", "prompt": "x", "method": "magic"},  # 3
            {"image": "in/img0.png", "instrucion": "make it blue"},  # 4: a typo'd field
            {"image": "in/img0.png"},  # 5: nothing to do
            {"image": "in/img0.png", "prompt": "x", "instruction": "y"},  # 6: both
            {"image": "in/clear.png", "prompt": "x"},  # 7: transparent
            {"image": "in/img0.png", "prompt": "x", "mask": "in/small_mask.png"},  # 8: mask size
            {"image": "in/img0.png", "prompt": "x", "method": "ddim4", "strength": 0.5},  # 9: no strength
            {"image": "in/img0.png", "prompt": "x", "output": "../escape.png"},  # 10
            {"image": "in/img0.png", "prompt": "x", "output": "a.jpg"},  # 11
            {"image": "in/img0.png", "prompt": "x", "method": "identity"},  # 12: reference method
            {"image": "in/img0.png", "prompt": "x", "output": "same.png"},  # 13: fine ...
            {"image": "in/img0.png", "prompt": "y", "output": "same.png"},  # 14: ... but 14 writes the same file
            "[1, 2]",  # 15: not an object
            {"image": "in/img0.png", "prompt": "x", "seed": -1},  # 16
            {"image": "in/img0.png", "prompt": "x", "target_prompt": "x"},  # 17: the alias twice
        ],
    )

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(batch_mod.JobRunner, "_editor", no_model)
    out = tmp_path / "out"
    # dry run: every line checked, nothing edited, exit status 1
    assert main(["batch", str(jobs), "--out", str(out), "--dry-run"]) == 1
    printed = capsys.readouterr().out
    assert "17 lines: 1 to run, 0 finished, 16 with errors" in printed
    assert not out.exists()
    # a real run: line 13 is the only good one; make its method fail to load, so no model runs at all
    monkeypatch.setattr(batch_mod, "_local_outcomes", lambda pending, s, box: iter([batch_mod.Outcome(13, error="stopped here")]))
    assert main(["batch", str(jobs), "--out", str(out)]) == 1
    s = _summary(out)
    errors = {e["line"]: e["error"] for e in s["errors"]}
    assert s["total"] == 17 and s["error"] == 17 and s["done"] == 0
    expect = {
        1: "not a JSON line",
        2: "in/missing.png not found",
        3: "unknown method 'magic'; known methods:",
        4: "unknown field 'instrucion'",
        5: "give an instruction or a target_prompt",
        6: "not both",
        7: "transparent",
        8: "must match",
        9: "no edit strength",
        10: "relative name inside --out",
        11: "batch outputs are PNG",
        12: "reference method",
        13: "stopped here",
        14: "also written by jobs.jsonl:13",
        15: "must be a JSON object",
        16: "seed",
        17: "not both",
    }
    for line, words in expect.items():
        assert words in errors[line], (line, errors[line])
    assert not list(out.glob("*.png"))


def test_usage_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["batch", "--out", str(tmp_path / "o")]) == 2
    assert "give a JOBS.jsonl file or --images DIR" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "jobs file" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert main(["batch", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no job" in capsys.readouterr().err
    assert main(["batch", "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--prompt", "x", "--ray-workers", "2"]) == 2
    assert "--ray-workers goes with --ray" in capsys.readouterr().err


# -- a local batch, its record, its resume ----------------------------------------------------------------
def test_a_batch_writes_each_edit_once_with_its_record(local_run, good_jobs, model):
    from retouch.edit import Editor, load_image, load_mask

    s = _summary(local_run)
    assert (s["total"], s["done"], s["skipped"], s["error"]) == (5, 5, 0, 0)
    assert s["model_loads"] == 2  # turbo once for four jobs, ddim4 once
    outputs = sorted(str(p.relative_to(local_run)) for p in local_run.rglob("*.png"))
    assert outputs == ["a0.png", "a1.png", "d.png", "img1.png", "sub/masked.png"]
    rec = read_record(local_run / "a1.png")
    assert rec["method"] == "turbo" and rec["image"] == "in/img0.png" and rec["target_caption"] == TARGETS[1]
    assert rec["strength"] == 0.5 and rec["seed"] == 0 and "seconds" not in rec
    # the batch writes what the Python API makes of the same request
    ed = Editor("turbo", model=str(model), captioner=None)
    src = load_image(good_jobs.parent / "in/img0.png")
    (turn,) = ed.edit(src, target_prompt=TARGETS[1], source_prompt=SRC, strength=0.5)
    np.testing.assert_array_equal(np.asarray(Image.open(local_run / "a1.png")), turn.image)
    # the masked job keeps every pixel outside its mask
    masked = np.asarray(Image.open(local_run / "sub/masked.png"))
    m = load_mask(good_jobs.parent / "in/mask0.png", src.shape[:2])
    np.testing.assert_array_equal(masked[~m], src[~m])
    assert not np.array_equal(masked[m], src[m])


def test_a_rerun_skips_finished_outputs_and_redoes_a_changed_job(local_run, good_jobs, model, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(["batch", str(good_jobs), "--out", str(out), *_model_args(model)]) == 0
    s = _summary(out)
    assert (s["done"], s["skipped"]) == (0, 5) and set(_status(s).values()) == {"skipped"}
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    # --overwrite computes every line again, to the same bytes
    assert main(["batch", str(good_jobs), "--out", str(out), "--overwrite", *_model_args(model)]) == 0
    assert set(_status(_summary(out)).values()) == {"done"}
    for p in local_run.rglob("*.png"):
        assert (out / p.relative_to(local_run)).read_bytes() == p.read_bytes()
    # change line 3's caption: only its output is computed again
    rows = [json.loads(x) for x in good_jobs.read_text().splitlines()]
    rows[2]["prompt"] = "a blue heart on green grass"
    changed = _jobs(good_jobs.parent / "changed.jsonl", rows)
    assert main(["batch", str(changed), "--out", str(out), *_model_args(model)]) == 0
    s = _summary(out)
    assert _status(s) == {1: "skipped", 2: "skipped", 3: "done", 4: "skipped", 5: "skipped"}
    assert s["lines"][2]["replaced"] is True and read_record(out / "img1.png")["target_caption"] == "a blue heart on green grass"
    # a file batch did not write is never overwritten
    Image.new("RGB", (8, 8)).save(out / "a0.png")
    assert main(["batch", str(good_jobs), "--out", str(out), *_model_args(model)]) == 1
    assert "was not written by retouch batch" in _summary(out)["errors"][0]["error"]


def test_paired_folders_edit_every_image_with_its_mask(tmp_path, model):
    imgs = _write_images(tmp_path / "images", 3)
    (tmp_path / "masks").mkdir()
    for p in imgs[:2]:
        h, w = np.asarray(Image.open(p)).shape[:2]
        m = np.zeros((h, w), np.uint8)
        m[: h // 2] = 255
        Image.fromarray(m, "L").save(tmp_path / "masks" / p.name)
    out = tmp_path / "out"
    args = ["batch", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--prompt", TARGETS[0]]
    assert main([*args, "--source-prompt", SRC, "--out", str(out), *_model_args(model)]) == 1  # img2 has no mask
    s = _summary(out)
    assert _status(s) == {1: "done", 2: "done", 3: "error"}
    assert "no mask for img2.png" in s["errors"][0]["error"]
    for p in imgs[:2]:
        src, res = np.asarray(Image.open(p)), np.asarray(Image.open(out / p.name))
        h = src.shape[0]
        assert res.shape == src.shape
        np.testing.assert_array_equal(res[h // 2 :], src[h // 2 :])  # outside the mask: the input's pixels
        assert read_record(out / p.name)["target_caption"] == TARGETS[0]


# -- kill -9 at about half, then resume -----------------------------------------------------------------------
def test_resume_after_kill_9_computes_nothing_twice(tmp_path, model):
    n = 24
    imgs = _write_images(tmp_path / "in", 3)
    rows = [
        {"image": str(imgs[i % 3]), "source_prompt": SRC, "prompt": f"{TARGETS[i % 3]} no. {i}", "output": f"{i:03d}.png"} for i in range(n)
    ]
    jobs = _jobs(tmp_path / "jobs.jsonl", rows)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "retouch.cli", "batch", str(jobs), "--out", str(out), "--threads", "1", *_model_args(model)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 400
        while len(list(out.glob("*.png"))) < n // 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert not (out / SUMMARY_NAME).exists()  # it died without a word
    finished = sorted(p.name for p in out.glob("*.png"))
    assert n // 2 <= len(finished) < n
    stamps = {}
    for name in finished:  # each whole and readable, with its job's record
        assert read_record(out / name)["job"]
        stamps[name] = (out / name).stat().st_mtime_ns
    assert main(["batch", str(jobs), "--out", str(out), "--threads", "1", *_model_args(model)]) == 0
    s = _summary(out)
    skipped = sorted(e["output"] for e in s["lines"] if e["status"] == "skipped")
    done = sorted(e["output"] for e in s["lines"] if e["status"] == "done")
    assert skipped == finished and len(done) == n - len(finished) and not set(done) & set(finished)
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == stamps  # none was written again
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:03d}.png" for i in range(n)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    for i in range(n):
        rec = read_record(out / f"{i:03d}.png")
        assert rec["target_caption"] == rows[i]["prompt"]


# -- Ray: a local head node on loopback ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ray_head(env: dict) -> tuple[subprocess.Popen, int, Path]:
    """``ray start --head --block`` on loopback with small resources; (process, port, temp dir) once it says it started.
    Ray gives its raylet 30 s to register, which an overloaded machine can miss: then it tries again (3 times)."""
    ray_bin = Path(sys.executable).with_name("ray")
    log_tail = ""
    for _attempt in range(3):
        port = _free_port()
        temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must stay short
        log = temp / "head.log"
        with open(log, "wb") as f:
            head = subprocess.Popen(
                [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1"]
                + [
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    "--temp-dir",
                    str(temp),
                    "--object-store-memory",
                    str(100 * 2**20),
                ],
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180  # a bound, not a speed target
        while head.poll() is None and time.monotonic() < deadline:
            if b"Ray runtime started" in log.read_bytes():
                return head, port, temp
            time.sleep(0.2)
        log_tail = log.read_bytes().decode(errors="replace")[-1500:]
        _stop_ray_head(head, temp)
    pytest.fail(f"ray start --head did not come up in 3 tries; its last words:\n{log_tail}")


def _stop_ray_head(head: subprocess.Popen, temp: Path) -> None:
    head.terminate()  # `ray start --block` stops the node's processes on SIGTERM
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait()
    shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_run_writes_the_files_of_a_local_run(local_run, good_jobs, model, tmp_path):
    pytest.importorskip("ray")
    # the head advertises 127.0.0.1 only with this variable (Ray otherwise swaps loopback for the network address)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    head, port, temp = _start_ray_head(env)
    try:
        out = tmp_path / "ray-out"
        # the driver in its own process (without the variable: `retouch batch` keeps a loopback address itself),
        # so that a cluster that never answers fails the test instead of hanging it
        driver_env = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        cmd = [sys.executable, "-m", "retouch.cli", "batch", str(good_jobs), "--out", str(out), "--ray", f"127.0.0.1:{port}"]
        run = subprocess.run([*cmd, *_model_args(model)], env=driver_env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        _stop_ray_head(head, temp)
    s = _summary(out)
    assert s["ray"] == f"127.0.0.1:{port}" and s["workers"] == 1 and s["done"] == 5
    local = sorted(p.relative_to(local_run) for p in local_run.rglob("*.png"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == local
    for rel in local:
        assert (out / rel).read_bytes() == (local_run / rel).read_bytes(), rel
