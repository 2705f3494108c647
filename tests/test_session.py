"""``retouch.session.EditSession`` (the Python API behind the server's sessions) on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.edit import Editor
from retouch.methods import get_method
from tests.methods.conftest import tiny_inversion_dir  # noqa: F401  (fixtures, re-exported)
from tests.models.conftest import tiny_shapes_dir  # noqa: F401


def _caption(seed: int = 46) -> str:
    import random

    from retouch.world import detailed_caption, random_scene

    return detailed_caption(random_scene(random.Random(seed)))  # an orange circle on a red brick wall, no style


SRC = _caption()


@pytest.fixture(scope="module")
def editor(tiny_shapes_dir, tiny_inversion_dir):  # noqa: F811
    return Editor(get_method("turbo", model=str(tiny_shapes_dir), captioner=None, mask="none", compose="paste", cache_size=0))


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_turns_chain_captions_and_reuse_one_inversion(editor):
    img = _image()
    s = editor.session(img, SRC)
    assert s.prepared.nfe == 2 * editor.method.steps and s.image is img and not s.can_undo
    t1 = s.edit("make it a sepia picture")
    assert t1.caption.startswith("a sepia picture of") and "brick wall" in t1.caption
    assert t1.record.nfe_inversion == 0 and t1.record.nfe_edit == editor.method.steps
    t2 = s.edit("change the background to a starry night sky")
    assert t2.caption.startswith("a sepia picture of") and "starry night sky" in t2.caption  # the rewrite of turn 1's caption
    assert t2.record.source_caption == SRC  # still an edit of the uploaded image
    assert s.current == 2 and s.can_undo and not s.can_redo
    # re-render the current turn at another strength: same caption, nothing stacked
    t2b = s.edit(replace=True, strength=0.3)
    assert (t2b.index, t2b.caption, t2b.strength, len(s.turns)) == (2, t2.caption, 0.3, 3)
    assert not np.array_equal(t2b.image, t2.image)
    assert s.undo().index == 1 and s.redo().index == 2
    with pytest.raises(LookupError, match="nothing to redo"):
        s.redo()
    s.undo()
    s.undo()
    with pytest.raises(LookupError, match="nothing to undo"):
        s.undo()
    t = s.edit(target_prompt="a yellow star on a blue sky")  # after undo: the redo list is dropped
    assert t.index == 1 and len(s.turns) == 2
    assert s.nbytes() >= sum(x.image.nbytes for x in s.turns)


def test_session_refuses_bad_requests(editor):
    s = editor.session(_image(1), SRC)
    with pytest.raises(ValueError, match="nothing to replace"):
        s.edit(replace=True, strength=0.5)
    with pytest.raises(ValueError, match="instruction is empty"):
        s.edit("   ")
    with pytest.raises(ValueError, match="not both"):
        s.edit("make it red", target_prompt="a red circle")
    with pytest.raises(ValueError, match="but the image is"):
        s.edit("make it a sepia picture", mask=np.ones((4, 4), bool))
    rec = editor.record(editor.edit(_image(2), target_prompt="a green square on a blue sky", source_prompt=SRC)[0])
    assert rec.method == "turbo" and rec.width == 32 and rec.height == 24 and rec.nfe_edit == editor.method.steps
