"""The classic feature-level models, one module each, registered with `@register_model`
(`classic_msa.model`); every module here is imported before the first lookup by name."""
