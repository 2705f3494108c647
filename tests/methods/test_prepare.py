"""``Method.prepare`` / ``edit_prepared``: one inversion for many edits, the same maths as ``edit`` (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.methods import EditRequest, Method, Prepared, get_method, takes_strength

SRC, TGT, TGT2 = "a red circle on a blue sky", "a green square on a blue sky", "a blue star on a blue sky"


@pytest.fixture(scope="module")
def turbo(tiny_shapes_dir, tiny_inversion_dir):
    # cache_size=0: nothing is reused behind the test's back, only what prepare() returned
    return get_method("turbo", model=str(tiny_shapes_dir), captioner=None, mask="none", compose="paste", cache_size=0)


def _image(seed: int, h: int = 20, w: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_prepared_edits_equal_plain_edits_and_cost_the_edit_alone(turbo):
    img = _image(0)
    prep = turbo.prepare(img, SRC)
    assert isinstance(prep, Prepared) and prep.nfe == 2 * turbo.steps and prep.seconds > 0 and prep.source_prompt == SRC
    for target, strength in ((TGT, None), (TGT2, 0.5)):
        fast = turbo.edit_prepared(prep, target_prompt=target, strength=strength)
        kw = {} if strength is None else {"strength": strength}
        full = turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=target), **kw)
        assert np.array_equal(fast.image, full.image)  # the same maths, bit for bit
        assert (fast.nfe_inversion, fast.nfe_edit, fast.s_inversion) == (0, turbo.steps, 0.0) and fast.info["inversion_reused"]
        assert full.nfe_inversion == 2 * turbo.steps  # no cache: the plain edit inverted again
        assert fast.mask is not None and fast.mask.shape == img.shape[:2] and (fast.mask == 1).all()  # mask=none: everything


def test_prepared_edit_checks_its_inputs(turbo):
    prep = turbo.prepare(_image(1), SRC)
    with pytest.raises(ValueError, match="strength"):
        turbo.edit_prepared(prep, target_prompt=TGT, strength=3.0)
    with pytest.raises(ValueError, match="target caption is the source caption"):
        turbo.edit_prepared(prep, target_prompt=SRC)
    with pytest.raises(ValueError, match="mask shape"):
        turbo.edit_prepared(prep, target_prompt=TGT, mask=np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="no captioner"):
        turbo.prepare(_image(2))  # this backbone has no captioner and no caption was given


def test_the_default_split_runs_the_whole_edit():
    class Echo(Method):
        name = "echo-test"

        def __init__(self) -> None:
            self.requests: list[EditRequest] = []

        def edit(self, request, callback=None):
            from retouch.methods import EditResult

            self.requests.append(request)
            return EditResult(image=request.image[::-1].copy(), nfe_edit=1)

    m = Echo()
    img = _image(3)
    prep = m.prepare(img, "a caption")
    assert prep.state is None and prep.nfe == 0 and not m.reuses_inversion and not takes_strength(Echo)
    res = m.edit_prepared(prep, instruction="flip it")
    assert np.array_equal(res.image, img[::-1])
    assert m.requests[0].source_prompt == "a caption" and m.requests[0].instruction == "flip it"
    with pytest.raises(ValueError, match="no edit strength"):
        m.edit_prepared(prep, instruction="flip it", strength=0.5)
