"""The two reference methods that calibrate the benchmark's metrics."""

from __future__ import annotations

import numpy as np

from . import EditRequest, EditResult, ReferenceMethod, register_method


@register_method
class Identity(ReferenceMethod):
    """Returns the source unchanged: perfect background, zero success."""

    name = "identity"

    def edit_with_truth(self, request: EditRequest, target: np.ndarray | None) -> EditResult:
        return EditResult(image=request.image.copy())


@register_method
class Oracle(ReferenceMethod):
    """Returns the ground-truth target: the ceiling of every metric."""

    name = "oracle"

    def edit_with_truth(self, request: EditRequest, target: np.ndarray | None) -> EditResult:
        if target is None:
            raise ValueError("the oracle needs a suite with ground-truth targets (target_image_path); this suite has none")
        return EditResult(image=target.copy())
