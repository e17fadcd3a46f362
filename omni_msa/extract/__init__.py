"""Features from raw media, MMSA-FET style, under the omni path's own decoding and missingness.

`extract_manifest(manifest, out, settings=ExtractionSettings(...))` (and `omni-msa extract`) turns a
raw-media manifest into `features.npz` + `manifest.csv` of a registered feature set
(`extracted_egemaps`, `extracted_librosa`, each also `_aligned`), optionally an MMSA pickle.
Extractors are registry entries (`omni_msa.extract.extractors`, one module each); a recipe names
one per modality (`omni_msa.extract.recipes`). The heavy libraries (opensmile, librosa, dlib,
transformers) are imported only when an extractor runs.
"""

from omni_msa.extract.base import (
    AudioClip,
    ModalityExtractor,
    Rows,
    TextClip,
    VideoClip,
    extractor_names,
    get_extractor,
    register_extractor,
)
from omni_msa.extract.outputs import extract_manifest, write_extraction
from omni_msa.extract.recipes import Recipe, get_recipe, recipe_names, register_recipe
from omni_msa.extract.run import (
    DEFAULT_MEDIA,
    Extraction,
    ExtractionSettings,
    extract_samples,
    masked_inputs,
    warm_up,
)

__all__ = ["DEFAULT_MEDIA", "AudioClip", "Extraction", "ExtractionSettings", "ModalityExtractor", "Recipe", "Rows",
           "TextClip", "VideoClip", "extract_manifest", "extract_samples", "extractor_names", "get_extractor",
           "get_recipe", "masked_inputs", "recipe_names", "register_extractor", "register_recipe", "warm_up",
           "write_extraction"]
