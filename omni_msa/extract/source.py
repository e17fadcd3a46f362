"""Features of a comparison's raw-media samples, extracted on demand: what a classic model reads when
the comparison gives it a recipe (`data.extract`) instead of a feature file.

Training and selection read the features of the complete media. Each evaluation protocol extracts
the evaluation split again from the media that protocol damages (`apply_to_media`, the omni path's
own function, through the omni readouts' media settings), so both families see the same words,
stretch of audio and frames removed; a modality complete in a protocol's draw is served from the
cache. The unaligned layout: one row per audio frame and video frame, one per text token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import MODALITIES, Sample
from omni_msa.extract.recipes import get_recipe
from omni_msa.extract.run import Extraction, ExtractionSettings, extract_samples
from omni_msa.media_inputs import MediaSettings

COMPLETE = MissingnessProtocol()


@dataclass(frozen=True)
class MediaFeatures:
    """A recipe (`omni_msa.extract.recipes`), the media decoding and the on-disk cache of its features."""

    recipe: str
    media: MediaSettings
    cache_dir: str

    def __post_init__(self) -> None:
        get_recipe(self.recipe)

    @property
    def feature_set(self) -> str:
        return get_recipe(self.recipe).spec(aligned=False).name

    def key(self) -> dict[str, Any]:
        """What the features depend on besides the clips: every extractor (name, version, parameters,
        package versions) and the media settings; part of a classic model's settings."""
        recipe = get_recipe(self.recipe)
        return {"recipe": self.recipe, "feature_set": self.feature_set, "media": asdict(self.media),
                "extractors": {m: json.loads(recipe.extractor(m).cache_key()) for m in MODALITIES}}

    def extract(self, samples: list[Sample], protocol: MissingnessProtocol = COMPLETE) -> Extraction:
        """The features of `samples` from their media under `protocol`; a clip that fails is in the
        extraction's errors, with its id, field and reason."""
        settings = ExtractionSettings(recipe=self.recipe, media=self.media, protocol=protocol)
        return extract_samples(samples, cache_dir=Path(self.cache_dir), settings=settings)
