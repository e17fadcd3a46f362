"""A raw-media manifest in, the feature files out: `features.npz` + `manifest.csv` (the npz feature
format, sequences with lengths), `errors.jsonl` (one row per clip that failed: id, field, reason,
file), `extraction.json` (what was run: recipe, extractors and parameters, media settings,
protocol, layout, per-clip report, cache counts) and, on request, an MMSA-layout pickle.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from omni_msa.data.manifest import read_manifest, read_manifest_column
from omni_msa.data.mmsa import write_mmsa_pickle
from omni_msa.data.npz_features import write_npz_features
from omni_msa.data.record import MODALITIES, DataError
from omni_msa.extract.align import WORDS_COLUMN, parse_word_timings
from omni_msa.extract.run import DEFAULT_SETTINGS, Extraction, ExtractionSettings, extract_samples
from omni_msa.files import write_json, write_jsonl

LAYOUTS = ("auto", "aligned", "unaligned")
FEATURES_NAME, ERRORS_NAME, SUMMARY_NAME = "features.npz", "errors.jsonl", "extraction.json"


def extract_manifest(manifest: str | Path, out: str | Path, *, dataset: str = "mosi",
                     settings: ExtractionSettings = DEFAULT_SETTINGS, layout: str = "auto",
                     cache_dir: str | Path | None = None, mmsa_pickle: str | Path | None = None,
                     progress: bool = True) -> Extraction:
    """Extract every clip of `manifest` into `out` (cache in `out/cache` unless `cache_dir`).

    `layout`: `aligned` (needs the manifest's `words` timings), `unaligned`, or `auto` (aligned
    when the manifest has a `words` column with any timings). Invalid manifest rows, bad word
    timings and clips that fail go to the errors file; a run in which no clip succeeds is a
    `DataError` (after the errors file is written)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    out = Path(out)
    loaded = read_manifest(manifest, dataset=dataset, check_media=False, skip_invalid=True)
    cells = read_manifest_column(manifest, WORDS_COLUMN)
    aligned = layout == "aligned" or (layout == "auto" and any(_filled(v) for v in cells.values()))
    timings, errors = {}, list(loaded.skipped)
    for sample in loaded.samples:
        try:
            spans = parse_word_timings(cells.get(sample.id), text=sample.text, sample_id=sample.id,
                                       source=str(manifest))
        except DataError as error:
            errors.append(error)
            continue
        if spans is not None:
            timings[sample.id] = spans
    bad = {error.sample_id for error in errors}
    extraction = extract_samples([s for s in loaded.samples if s.id not in bad], settings=settings,
                                 cache_dir=out / "cache" if cache_dir is None else cache_dir,
                                 word_timings=timings, aligned=aligned, progress=progress)
    extraction.errors[:0] = errors
    write_extraction(extraction, out, dataset=dataset, mmsa_pickle=mmsa_pickle, manifest=manifest)
    return extraction


def _filled(cell: Any) -> bool:
    return cell is not None and not (isinstance(cell, str) and not cell.strip())


def write_extraction(extraction: Extraction, out: str | Path, *, dataset: str, mmsa_pickle: str | Path | None = None,
                     manifest: str | Path | None = None) -> None:
    """Write the errors, the summary, the npz features with their manifest and the optional MMSA pickle."""
    out = Path(out)
    write_jsonl(out / ERRORS_NAME, [error_row(error) for error in extraction.errors])
    write_json(out / SUMMARY_NAME, summary(extraction, manifest))
    if not extraction.samples:
        raise DataError(f"no clip could be extracted ({len(extraction.errors)} errors, listed in "
                        f"{out / ERRORS_NAME})", source=manifest)
    write_npz_features(extraction.samples, out / FEATURES_NAME, feature_set=extraction.feature_set)
    if mmsa_pickle is not None:
        write_mmsa_pickle(extraction.samples, mmsa_pickle, dataset=dataset, feature_set=extraction.feature_set)


def error_row(error: DataError) -> dict[str, Any]:
    return {"id": error.sample_id, "field": error.field, "reason": error.reason, "source": error.source}


def summary(extraction: Extraction, manifest: str | Path | None = None) -> dict[str, Any]:
    """What was run and what came of it, for `extraction.json`."""
    settings = extraction.settings
    recipe = settings.resolved_recipe()
    return {
        "manifest": None if manifest is None else str(manifest), "feature_set": extraction.feature_set,
        "recipe": recipe.name,
        "extractors": {m: json.loads(recipe.extractor(m).cache_key()) for m in MODALITIES},
        "media": dataclasses.asdict(settings.media), "protocol": settings.protocol.to_dict(),
        "placeholder": settings.placeholder, "clips": len(extraction.samples), "errors": len(extraction.errors),
        "cache_hits": extraction.cache_hits, "cache_misses": extraction.cache_misses,
        "per_clip": [dataclasses.asdict(report) for report in extraction.clips],
    }

