import numpy as np
import pytest

from retouch.methods import EditRequest, list_methods


def test_request_validates_image_and_mask():
    img = np.zeros((64, 64, 3), np.uint8)
    EditRequest(image=img, mask=np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        EditRequest(image=np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        EditRequest(image=np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"mask shape \(32, 32\)"):
        EditRequest(image=img, mask=np.zeros((32, 32), bool))


def test_builtin_methods_registered():
    assert {"identity", "oracle"} <= set(list_methods())
