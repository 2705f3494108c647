"""Networks and their loading: the backbone bundle and the one denoiser contract (see docs/backbone.md)."""

from .backbone import (
    PIPELINE_KINDS,
    Backbone,
    Denoiser,
    TextConditioning,
    UNetDenoiser,
    load_backbone,
    register_pipeline,
)

__all__ = ["PIPELINE_KINDS", "Backbone", "Denoiser", "TextConditioning", "UNetDenoiser", "load_backbone", "register_pipeline"]
