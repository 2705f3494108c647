"""``retouch generate``: one prompt or a JSON-lines file, with clear errors."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from retouch.cli import main


def test_single_prompt_and_batch(tiny_shapes_dir, tmp_path, capsys):
    out = tmp_path / "one.png"
    assert main(["generate", "a red star", "-o", str(out), "--model", str(tiny_shapes_dir), "--seed", "5"]) == 0
    single = np.asarray(Image.open(out))
    assert single.shape == (16, 16, 3)
    lines = tmp_path / "caps.jsonl"
    lines.write_text("\n".join(json.dumps({"detailed": p, "short": "x"}) for p in ["a blue circle", "a red star", "a green heart"]) + "\n")
    folder = tmp_path / "gen"
    args = ["generate", "--prompts", str(lines), "--field", "detailed", "--out", str(folder), "--model", str(tiny_shapes_dir)]
    assert main([*args, "--seed", "4", "--batch-size", "2"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    # line i uses seed + i whatever the batching: line 1 with seed 4 is the single prompt with seed 5
    assert np.array_equal(np.asarray(Image.open(folder / "00001.png")), single)
    assert "wrote 3 images" in capsys.readouterr().out


def test_generate_errors(tiny_shapes_dir, tmp_path, capsys):
    m = ["--model", str(tiny_shapes_dir)]
    assert main(["generate", "   ", "-o", str(tmp_path / "a.png"), *m]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert main(["generate", *m]) == 2
    assert "PROMPT or --prompts" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"short": "a star"}\n')
    assert main(["generate", "--prompts", str(bad), "--out", str(tmp_path / "o"), *m]) == 2
    assert "no string field 'detailed'" in capsys.readouterr().err
    assert main(["generate", "x", "-o", str(tmp_path / "a.png"), "--model", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["generate", "x", "-o", str(tmp_path / "a.txt"), *m]) == 2
    assert ".png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "a.png").exists()
