"""Fixtures every test shares."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # the tiny models do microseconds of maths per op; on a small busy machine the thread pool's
    # hand-offs dominate (a 2-thread tiny-UNet call measured ~2 s against ~16 ms with one thread)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
