"""Which extractor computes each modality of a feature set: the recipes `omni-msa extract --feature-set` names.

A recipe is named after its unaligned feature-set spec (`omni_msa.feature_sets.extracted`); the
word-aligned layout is the spec `<name>_aligned`. Registering a recipe checks that both specs
exist and hold the extractors' dims, so a file's spec always says what the extractors wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from omni_msa.data.record import MODALITIES
from omni_msa.extract.base import ModalityExtractor, get_extractor
from omni_msa.feature_sets import FeatureSetSpec, get_feature_set
from omni_msa.registry import Registry

ALIGNED_SUFFIX = "_aligned"


@dataclass(frozen=True)
class Recipe:
    """The extractor (by registered name) of each modality, and parameter overrides per modality."""

    name: str
    extractors: Mapping[str, str]
    params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def extractor(self, modality: str) -> ModalityExtractor:
        return get_extractor(self.extractors[modality]).with_params(self.params.get(modality, {}))

    def spec(self, aligned: bool) -> FeatureSetSpec:
        return get_feature_set(self.name + (ALIGNED_SUFFIX if aligned else ""))

    def with_params(self, params: Mapping[str, Mapping[str, object]]) -> Recipe:
        """The recipe with some extractor parameters changed, per modality (checked by the extractor)."""
        merged = {m: {**self.params.get(m, {}), **params.get(m, {})} for m in MODALITIES}
        recipe = Recipe(self.name, self.extractors, merged)
        for modality in MODALITIES:
            recipe.extractor(modality)
        return recipe


RECIPES: Registry[Recipe] = Registry("extraction recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a recipe, after checking its extractors' modalities and dims against both layouts' specs."""
    if set(recipe.extractors) != set(MODALITIES):
        raise ValueError(f"recipe {recipe.name!r} needs an extractor for each of {MODALITIES}, got {recipe.extractors}")
    for aligned in (False, True):
        spec = recipe.spec(aligned)
        if spec.level != "sequence" or spec.aligned != aligned:
            raise ValueError(f"recipe {recipe.name!r}: feature set {spec.name!r} is not a sequence-level "
                             f"{'aligned' if aligned else 'unaligned'} set")
        for modality in MODALITIES:
            extractor = recipe.extractor(modality)
            if extractor.modality != modality or extractor.dim != spec.dims[modality]:
                raise ValueError(f"recipe {recipe.name!r}: extractor {extractor.name!r} gives {extractor.modality} "
                                 f"x {extractor.dim}, but feature set {spec.name!r} holds {modality} x "
                                 f"{spec.dims[modality]}")
    return RECIPES.register(recipe.name, recipe)


def get_recipe(name: str) -> Recipe:
    return RECIPES.get(name)


def recipe_names() -> list[str]:
    return RECIPES.names()


DEFAULT_RECIPE = "extracted_egemaps"
register_recipe(Recipe(DEFAULT_RECIPE, {"text": "minilm", "audio": "egemaps", "vision": "dlib_face68"}))
register_recipe(Recipe("extracted_librosa", {"text": "minilm", "audio": "librosa", "vision": "dlib_face68"}))
