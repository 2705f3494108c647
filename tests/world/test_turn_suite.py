"""Multi-turn suites in MagicBrush's turn structure: each turn starts from the last one's truth, with exact masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from retouch.world.render import render
from retouch.world.turn_suite import SESSIONS, load_turn_suite, write_turn_suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("turns") / "suite"
    write_turn_suite(out, n=3, turns=3, seed=7, size=64)
    return out


def test_sessions_chain_their_turns_with_exact_truth(suite):
    sessions = load_turn_suite(suite)
    assert len(sessions) == 3 and all(len(t) == 3 for t in sessions.values())
    raw = json.loads((suite / SESSIONS).read_text())
    for sid, turns in sessions.items():
        assert turns[0].input_path.name == f"{sid}-input.png"
        for prev, cur in zip(turns, turns[1:], strict=False):
            assert cur.input_path == prev.output_path  # MagicBrush: turn k edits turn k-1's output
        for t, rec in zip(turns, raw[sid], strict=True):
            assert set(rec) >= {"input", "mask", "output", "instruction"} and 1 <= t.editing_type_id <= 9
            out = np.asarray(Image.open(t.output_path))
            assert np.array_equal(out, render(t.target_scene, 64))  # the truth after this turn, exactly
            before = np.asarray(Image.open(t.input_path))
            m = t.mask()
            assert m.shape == (64, 64) and (np.abs(out.astype(int) - before.astype(int)).sum(-1)[~m] == 0).all()  # changes lie in the mask


def test_the_same_seed_writes_the_same_suite(suite, tmp_path):
    write_turn_suite(tmp_path / "again", n=3, turns=3, seed=7, size=64)
    assert (tmp_path / "again" / SESSIONS).read_text() == (suite / SESSIONS).read_text()
    with pytest.raises(FileExistsError):
        write_turn_suite(suite, n=1)


def test_cli_writes_turns_and_refuses_them_for_fill_tasks(tmp_path, capsys):
    from retouch.cli import main

    assert main(["world", "bench", "--turns", "2", "--n", "2", "--size", "64", "--out", str(tmp_path / "t")]) == 0
    assert all(len(v) == 2 for v in json.loads((tmp_path / "t" / SESSIONS).read_text()).values())
    assert main(["world", "bench", "--turns", "2", "--task", "erase", "--n", "2", "--out", str(tmp_path / "e")]) == 2
    assert "--turns belongs to --task edit" in capsys.readouterr().err
    assert main(["world", "bench", "--n", "2", "--size", "64", "--out", str(tmp_path / "pie")]) == 0  # the default: a Shapes-PIE suite
    assert (tmp_path / "pie" / "mapping_file.json").is_file()


def test_broken_sessions_are_named(suite, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(suite, bad)
    raw = json.loads((bad / SESSIONS).read_text())
    sid = sorted(raw)[1]
    raw[sid][1]["output"] = "../../x.png"
    (bad / SESSIONS).write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=f"session {sid} turn 2: field 'output' must be a file name"):
        load_turn_suite(bad)
    with pytest.raises(FileNotFoundError, match="edit_sessions.json missing"):
        load_turn_suite(tmp_path)
