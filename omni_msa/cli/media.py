"""`omni-msa check-media`: every clip of a raw-media manifest through the omni media path
(`omni_msa.media_check`). Torch and the readers are imported when the command runs."""

from __future__ import annotations

import argparse

from omni_msa.cli.common import command_options, registered, user_input


def add_check_media(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check-media", parents=[command_options()], help="run each clip of a manifest through the omni media path",
        description="Decode each clip of a raw-media manifest (frames, fps, size, decoder; audio, from the video "
                    "track where the settings say so), twice through a fresh media cache (hits, both passes timed), "
                    "then process and score it under each of the seven retention modes (tokens per modality, "
                    "what the prompt says). Writes a Markdown report; a clip that fails is reported with its id, "
                    "field and reason, and the rest go on. Default model: the tiny random-weight Thinker with an "
                    "untrained readout (a path check, not a sentiment prediction).")
    parser.add_argument("--manifest", required=True, help="a raw-media manifest (CSV or JSONL)")
    parser.add_argument("--out", default=None, help="the Markdown report (default: printed)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="a checkpoint of `omni-msa train`: its readout and media settings")
    model.add_argument("--backbone", default=None,
                       help="an untrained multimodal backbone (path, or 'tiny-thinker', the default)")
    parser.add_argument("--readout", default="discriminative", type=registered("omni_msa.readouts:readout_names"),
                        help="without --checkpoint: the (untrained) readout")
    parser.add_argument("--dataset", default="mosi", type=registered("omni_msa.datasets:dataset_names"),
                        help="the manifest's dataset: label range and prompt scale")
    parser.add_argument("--seed", type=int, default=0, help="the readout head's initialisation")
    parser.set_defaults(run=run_check_media)


def run_check_media(args: argparse.Namespace) -> None:
    from omni_msa.media_check import TINY_THINKER, check_media, render_report, write_report

    with user_input():
        check = check_media(args.manifest, dataset=args.dataset, checkpoint=args.checkpoint,
                            backbone=args.backbone or TINY_THINKER, readout=args.readout, seed=args.seed)
    if args.out is None:
        print(render_report(check, args.invocation), end="")
        return
    path = write_report(check, args.out, args.invocation)
    failed = len({error.id for error in check.errors})
    print(f"{len(check.clips)} clips decoded, {failed} with an error -> {path}")
