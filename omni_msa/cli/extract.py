"""`omni-msa extract`: features from the raw media of a manifest (`omni_msa.extract`), under a
missingness protocol applied to the media as the omni path applies it. The extractors' libraries
are imported when the command runs."""

from __future__ import annotations

import argparse
from dataclasses import replace

from omni_msa.cli.common import (
    UsageError,
    add_missingness_options,
    command_options,
    missingness_protocol,
    registered,
    user_input,
)


def add_extract(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "extract", parents=[command_options()], help="extract features from the raw media of a manifest",
        description="Decode each clip of a raw-media manifest as the omni path does, apply the missingness protocol "
                    "to the media (the same words, audio chunks and frames the omni readouts lose), and extract "
                    "text (all-MiniLM-L6-v2 tokens), audio (openSMILE eGeMAPS or librosa) and vision (dlib face "
                    "landmarks and geometry) features into DIR/features.npz + DIR/manifest.csv; clips that fail go "
                    "to DIR/errors.jsonl with id and reason. Cached per clip and modality (DIR/cache), so a second "
                    "run, or a resumed one, extracts only what changed.")
    parser.add_argument("--manifest", required=True, help="a raw-media manifest (CSV or JSONL); an optional `words` "
                        "column of JSON [word, start, end] timings allows the word-aligned layout")
    parser.add_argument("--out", required=True, help="the output folder")
    parser.add_argument("--feature-set", default="extracted_egemaps",
                        type=registered("omni_msa.extract.recipes:recipe_names"),
                        help="the extraction recipe: extracted_egemaps (default) or extracted_librosa")
    parser.add_argument("--layout", choices=("auto", "aligned", "unaligned"), default="auto",
                        help="aligned: audio and vision averaged over each word (needs `words`); auto: aligned "
                             "where the manifest has word timings")
    parser.add_argument("--dataset", default="mosi", type=registered("omni_msa.datasets:dataset_names"),
                        help="the manifest's dataset (label range)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frames sampled per second (default 2, the omni path's)")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per clip (default 32)")
    parser.add_argument("--audio-from", choices=("video", "file"), default="video",
                        help="video: the video's own audio track where the clip has a video (default); file: the "
                             "manifest's audio file")
    parser.add_argument("--placeholder", default="[masked]", help="the word a masked word becomes (as the omni path)")
    parser.add_argument("--cache", default=None, help="the cache folder (default DIR/cache)")
    parser.add_argument("--mmsa-pickle", default=None, help="also write an MMSA-layout pickle here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_missingness_options(parser)
    parser.set_defaults(run=run_extract)


def run_extract(args: argparse.Namespace) -> None:
    from omni_msa.extract import DEFAULT_MEDIA, ExtractionSettings, extract_manifest

    protocol = missingness_protocol(args)
    with user_input():
        media = replace(DEFAULT_MEDIA, use_audio_in_video=args.audio_from == "video",
                        **({} if args.fps is None else {"fps": args.fps}),
                        **({} if args.max_frames is None else {"max_frames": args.max_frames}))
        if not args.placeholder.strip() or len(args.placeholder.split()) != 1:
            raise UsageError(f"--placeholder must be one word, got {args.placeholder!r}")
        settings = ExtractionSettings(recipe=args.feature_set, media=media, protocol=protocol,
                                      placeholder=args.placeholder)
        extraction = extract_manifest(args.manifest, args.out, dataset=args.dataset, settings=settings,
                                      layout=args.layout, cache_dir=args.cache, mmsa_pickle=args.mmsa_pickle,
                                      progress=not args.no_progress)
    hits = sum(extraction.cache_hits.values())
    lookups = hits + sum(extraction.cache_misses.values())
    print(f"{len(extraction.samples)} clips extracted ({extraction.feature_set}), {len(extraction.errors)} with an "
          f"error -> {args.out} (cache: {hits} of {lookups} modality entries hit)")
