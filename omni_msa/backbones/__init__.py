"""Backbone specs: one module per model family in this package, each registering its spec.

A spec says how to load the model and its processor, where LoRA goes by default, which module
prefixes bitsandbytes must never quantize, which prefixes are (frozen) media encoders, and
whether the backbone reads media. `omni_msa.backbone` loads any registered spec the same way;
a new backbone is one module here (or a `register_backbone` call in the user's code).
"""

from __future__ import annotations

from omni_msa.backbones.base import BackboneSpec, backbone_names, get_backbone, register_backbone

__all__ = ["BackboneSpec", "backbone_names", "get_backbone", "register_backbone"]
