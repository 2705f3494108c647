import json
import random

import numpy as np
from PIL import Image

from retouch.cli import main
from retouch.world import random_scene, render


def test_world_bench_then_bench_oracle(tmp_path, capsys):
    suite = tmp_path / "suite"
    assert main(["world", "bench", "--out", str(suite), "--n", "20", "--seed", "4"]) == 0
    assert (suite / "mapping_file.json").is_file()
    assert main(["bench", str(suite), "--method", "oracle", "--limit", "10", "--json", str(tmp_path / "o.json")]) == 0
    s = json.loads((tmp_path / "o.json").read_text())
    assert s["n"] == 10 and s["success"] == 1.0
    assert "| all |" in capsys.readouterr().out


def test_parse_prints_the_scene(tmp_path, capsys):
    scene = random_scene(random.Random(99))
    p = tmp_path / "x.png"
    Image.fromarray(render(scene)).save(p)
    assert main(["world", "parse", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    from retouch.world import Scene

    assert Scene.from_dict(out["scene"]).same_content(scene)


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["world", "parse", str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert "missing.png" in err and "Traceback" not in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["world", "parse", str(bad)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp_path / "wide.png")
    assert main(["world", "parse", str(tmp_path / "wide.png")]) == 2
    assert "96x64" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--method", "oracle"]) == 2
    assert "mapping_file.json" in capsys.readouterr().err
    assert main(["world", "bench", "--out", str(tmp_path / "s"), "--n", "0"]) == 2
    assert "at least one case" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.json")]) == 2
    assert "recipe" in capsys.readouterr().err


def test_unknown_method_lists_the_known_ones(tmp_path, capsys):
    main(["world", "bench", "--out", str(tmp_path / "s"), "--n", "2"])
    assert main(["bench", str(tmp_path / "s"), "--method", "magic"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'magic'" in err and "oracle" in err


def test_captions_then_score_renders(tmp_path, capsys):
    """Renders of the captioned scenes score perfectly; shuffled images do not."""
    cap = tmp_path / "c.jsonl"
    assert main(["world", "captions", "--n", "12", "--seed", "5", "--out", str(cap)]) == 0
    lines = [json.loads(x) for x in cap.read_text().splitlines()]
    assert len(lines) == 12 and {"scene", "short", "detailed"} <= set(lines[0])
    from retouch.world import Scene

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, line in enumerate(lines):
        Image.fromarray(render(Scene.from_dict(line["scene"]))).save(imgs / f"{i:05d}.png")
    capsys.readouterr()
    assert main(["world", "score", str(imgs), "--against", str(cap), "--json", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["n"] == 12 and s["exact_scene"] == 1.0 and s["acc_color"] == 1.0
    assert s["detected"] == 1.0 and s["acc_detected_emblem"] == 1.0
    (imgs / "00000.png").rename(imgs / "tmp.png")
    (imgs / "00001.png").rename(imgs / "00000.png")
    (imgs / "tmp.png").rename(imgs / "00001.png")
    main(["world", "score", str(imgs), "--against", str(cap), "--json", str(tmp_path / "s2.json")])
    assert json.loads((tmp_path / "s2.json").read_text())["exact_scene"] <= 10 / 12
    (imgs / "00003.png").unlink()
    assert main(["world", "score", str(imgs), "--against", str(cap)]) == 2
    assert "00003.png" in capsys.readouterr().err


def test_bench_every_and_settings(tmp_path, capsys):
    suite = tmp_path / "suite"
    assert main(["world", "bench", "--out", str(suite), "--n", "20", "--seed", "5"]) == 0
    assert main(["bench", str(suite), "--method", "identity", "--every", "5", "--json", str(tmp_path / "i.json")]) == 0
    s = json.loads((tmp_path / "i.json").read_text())
    assert s["n"] == 4 and s["every"] == 5
    assert main(["bench", str(suite), "--method", "identity", "--set", "colour=blue"]) == 2
    assert "no such setting" in capsys.readouterr().err
    assert main(["bench", str(suite), "--method", "identity", "--set", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
