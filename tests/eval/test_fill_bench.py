"""The fill benchmark: calibrated by the identity and oracle rows, scoring a classic erase, refusing a wrong task."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from retouch.cli import main
from retouch.eval.fill_bench import FillBenchConfig, hidden_attributes, in_mask_metrics, run_fill_bench
from retouch.world.fill_suite import write_fill_suite
from retouch.world.scene import WorldObject, random_scene


@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    root = tmp_path_factory.mktemp("fill-bench")
    for task in ("erase", "inpaint", "outpaint"):
        write_fill_suite(root / task, task, n=6, seed=8)
    return root


@pytest.mark.parametrize("task", ["erase", "inpaint", "outpaint"])
def test_reference_rows_calibrate(suites, task):
    oracle = run_fill_bench(FillBenchConfig(str(suites / task), "oracle"))
    assert oracle["success"] == 1.0 and oracle["attr_accuracy"] == 1.0 and oracle["in_psnr"] == 100.0 and oracle["in_l1"] == 0.0
    ident = run_fill_bench(FillBenchConfig(str(suites / task), "identity"))
    assert ident["in_psnr"] < 30 and ident["outside_exact"] == 1.0
    if task != "outpaint":  # the input itself still shows the object (erase) or lacks it (inpaint)
        assert ident["success"] == 0.0


def test_classic_erase_is_scored(suites, tmp_path):
    out = tmp_path / "ns.json"
    s = run_fill_bench(FillBenchConfig(str(suites / "erase"), "erase", options={"backend": "ns"}, json_out=str(out)))
    ident = run_fill_bench(FillBenchConfig(str(suites / "erase"), "identity"))
    assert s["n"] == 6 and s["outside_exact"] == 1.0
    assert s["in_psnr_pooled"] > ident["in_psnr_pooled"] + 5  # the fill is closer to the background than the object was
    assert s["s_per_image"] > 0 and s["options"] == {"backend": "ns"}
    assert json.loads(out.read_text())["n"] == 6 and out.with_suffix(".csv").is_file() and out.with_suffix(".md").is_file()


def test_the_method_must_do_the_suites_task(suites):
    with pytest.raises(ValueError, match="does erase; this is a outpaint suite"):
        run_fill_bench(FillBenchConfig(str(suites / "outpaint"), "erase"))
    with pytest.raises(ValueError, match="needs a diffusion inpainting model"):
        run_fill_bench(FillBenchConfig(str(suites / "inpaint"), "inpaint"))


def test_retouch_bench_dispatches_fill_suites(suites, capsys):
    assert main(["bench", str(suites / "erase"), "--method", "erase", "--set", "backend=telea", "--limit", "2"]) == 0
    table = capsys.readouterr().out
    assert "| erase (telea) | 2 |" in table


def test_in_mask_metrics_and_hidden_attributes():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    m = np.zeros((4, 4), bool)
    m[0, :2] = True
    r = in_mask_metrics(b, a, m)
    assert r["in_l1"] == pytest.approx(127.5) and r["in_psnr"] == pytest.approx(10 * np.log10(2))
    truth = random_scene(random.Random(0), n_objects=4)
    hide_right = np.zeros((128, 128), bool)
    hide_right[:, 100:] = True
    assert all(v == 1.0 for v in hidden_attributes(truth, truth, hide_right).values())
    o = truth.object_at(1)  # top right: touched by the hidden strip
    wrong = truth.with_object(WorldObject(**{**o.__dict__, "color": "red" if o.color != "red" else "blue"}))
    got = hidden_attributes(wrong, truth, hide_right)
    assert got["color"] == 0.5 and got["shape"] == 1.0  # one of the two right-hand objects has the wrong colour
