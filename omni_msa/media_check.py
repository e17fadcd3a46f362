"""`omni-msa check-media`: every clip of a raw-media manifest through the omni media path, with what
each step made of it, as a Markdown report.

Per clip: what its container says (`omni_msa.data.media.probe_media`); decoding into the model's
frames and audio (frames, effective fps, size, the decoder; audio seconds and where they came from),
done twice through a fresh media cache: the first pass decodes and stores, the second must be served
from the cache (hits counted, both timed, the arrays compared); decord's frames compared with PyAV's;
then for each of the seven retention modes (`omni_msa.data.missing.RETENTION_MODES`): the modalities
that remain, what the prompt says about them, the tokens per modality the processor makes, and the
readout's score. A clip that fails a step is reported with its id, field and reason; the rest go on.

The default model is the tiny random-weight Thinker (`tiny-thinker`) with an untrained readout: its
scores show that the real media run through the model end to end (finite, and the same on every
run); they are not sentiment predictions. A checkpoint brings its own readout and media settings.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.manifest import read_manifest
from omni_msa.data.media import MediaInfo, probe_media
from omni_msa.data.missing import RETENTION_MODES, MissingnessProtocol, modality_set_name
from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.media_cache import MediaCache
from omni_msa.media_inputs import DECORD, DecodedMedia, MediaSettings, decode_sample_media, decode_video_with_pyav

TINY_THINKER = "tiny-thinker"
DEFAULT_SETTINGS = MediaSettings(use_audio_in_video=True)  # Qwen2.5-Omni's defaults, audio from the video track
TOKEN_KINDS = ("text", "audio", "video")
_CHECK_FAILURES = (DataError, ValueError, RuntimeError)  # what one clip's media can make a step raise


@dataclass(frozen=True)
class ClipError:
    """A clip that failed a step: its id, the field and file at fault where known, the reason."""

    id: str
    step: str
    reason: str
    field: str | None = None
    source: str | None = None

    @classmethod
    def of(cls, error: Exception, sample_id: str, step: str) -> ClipError:
        if isinstance(error, DataError):
            return cls(id=error.sample_id or sample_id, step=step, reason=error.reason, field=error.field,
                       source=error.source)
        return cls(id=sample_id, step=step, reason=f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class DecodePass:
    """One decoding of a clip through the media cache: wall time and the cache's hits and misses."""

    seconds: float
    hits: int
    misses: int


@dataclass(frozen=True)
class ModeCheck:
    """One retention mode on one clip: what remains, what the prompt says, the tokens, the score."""

    mode: str
    present: tuple[str, ...] = ()
    prompt: str = ""
    transcript: bool = False
    tokens: dict[str, int] | None = None
    video_size: tuple[int, int] | None = None  # height, width of the frames the processor passes on
    pred: float | None = None
    status: str = "error"
    error: ClipError | None = None


@dataclass(frozen=True)
class ClipCheck:
    id: str
    probes: dict[str, MediaInfo]
    frames: int | None
    fps: float | None
    size: tuple[int, int] | None  # height, width
    decoder: str | None
    pyav_max_diff: int | None  # max |decord - PyAV| in grey levels, when decord made the frames
    audio_seconds: float | None
    audio_peak: float | None  # max |sample| of the mono wave (1.0 is full scale)
    audio_field: str | None
    passes: tuple[DecodePass, DecodePass]
    cache_identical: bool
    modes: tuple[ModeCheck, ...]

    @property
    def complete(self) -> ModeCheck:
        """The mode that keeps every modality: the clip's own score."""
        return next(m for m in self.modes if m.mode == modality_set_name(MODALITIES))


@dataclass(frozen=True)
class MediaCheck:
    manifest: str
    model: str
    readout: str
    trained: bool  # a checkpoint's readout; False: an untrained readout (a check of the path only)
    settings: MediaSettings
    clips: list[ClipCheck]
    errors: list[ClipError]
    environment: dict[str, str]


def check_media(manifest: str | Path, *, dataset: str = "mosi", checkpoint: str | Path | None = None,
                backbone: str = TINY_THINKER, readout: str = "discriminative",
                settings: MediaSettings | None = None, seed: int = 0) -> MediaCheck:
    """Check every clip of `manifest` (see the module docstring). With `checkpoint`, its readout and
    media settings; else `readout` (untrained, head seeded by `seed`) on `backbone` with `settings`
    (default: `DEFAULT_SETTINGS`). The media cache lives in a temporary directory, removed afterwards.
    Raises DataError for a manifest that cannot be read at all; per-clip failures are reported."""
    loaded = read_manifest(manifest, dataset=dataset, skip_invalid=True)
    errors = [ClipError.of(error, error.sample_id or "unknown", "manifest") for error in loaded.skipped]
    with tempfile.TemporaryDirectory(prefix="omni-msa-check-media-") as tmp:
        assembled, settings, model = _scorer(Path(tmp), manifest, dataset, checkpoint, backbone, readout,
                                             settings, seed)
        environment = media_environment()
        cache = MediaCache(Path(tmp) / "media_cache")
        # the builder decodes through the check's cache, not the cache a run's config names
        assembled.builder.decode_media = partial(decode_sample_media, settings=settings, cache=cache)
        clips = []
        for sample in loaded.samples:
            clip = _check_clip(assembled, sample, settings, cache, seed, errors)
            if clip is not None:
                clips.append(clip)
    return MediaCheck(manifest=str(manifest), model=model, readout=assembled.entry.name,
                      trained=checkpoint is not None, settings=settings, clips=clips, errors=errors,
                      environment=environment)


def _scorer(tmp: Path, manifest: str | Path, dataset: str, checkpoint: str | Path | None, backbone: str,
            readout: str, settings: MediaSettings | None, seed: int) -> tuple[Any, MediaSettings, str]:
    """The assembled readout, the media settings it takes and a name for the model."""
    if checkpoint is not None:
        from omni_msa.score import load_scorer

        assembled, cfg = load_scorer(checkpoint, media_cache_dir=tmp / "media_cache")
        model = f"checkpoint {checkpoint} ({cfg.backbone.name_or_path})"
    else:
        from omni_msa.assemble import assemble
        from omni_msa.backbone import BackboneConfig
        from omni_msa.config import DataSettings, OmniRunConfig, OptimSettings
        from omni_msa.readouts import ReadoutSettings

        cfg = OmniRunConfig(output_dir=str(tmp), backbone=BackboneConfig(name_or_path=backbone),
                            data=DataSettings(dataset=dataset, train=str(manifest), valid=str(manifest)),
                            readout=ReadoutSettings(kind=readout), media=settings or DEFAULT_SETTINGS,
                            optim=OptimSettings(seed=seed))
        assembled = assemble(cfg)
        weights = "random weights, " if backbone == TINY_THINKER else ""
        model = f"{backbone} ({weights}readout initialised from seed {seed}, never trained)"
    if not assembled.builder.multimodal:
        raise ValueError(f"{model} is a text-only backbone: check-media needs a multimodal one")
    assembled.readout.eval()
    return assembled, cfg.media, model


def _check_clip(assembled: Any, sample: Sample, settings: MediaSettings, cache: MediaCache, seed: int,
                errors: list[ClipError]) -> ClipCheck | None:
    """One clip through every step; None (and its error in `errors`) if it cannot be decoded."""
    try:
        probes = {field: probe_media(path, field=field) for field, path in
                  (("video", sample.video), ("audio", sample.audio)) if path is not None}
        first, first_pass = _decode_pass(sample, settings, cache)
        second, second_pass = _decode_pass(sample, settings, cache)
        pyav_diff = _pyav_max_diff(sample, first, settings)
    except _CHECK_FAILURES as error:
        errors.append(ClipError.of(error, sample.id, "decoding"))
        return None
    modes = tuple(_check_mode(assembled, sample, keep, seed) for keep in RETENTION_MODES)
    failed = [mode.error for mode in modes if mode.error is not None]
    if len(failed) == len(modes) and len({(e.reason, e.field, e.source) for e in failed}) == 1:
        failed = [replace(failed[0], step="every mode")]  # e.g. audio the processor cannot take
    errors.extend(failed)
    video, audio = first.video, first.audio
    seconds = None if audio is None else len(audio) / settings.sample_rate
    peak = None if audio is None else float(np.abs(audio).max())
    return ClipCheck(id=sample.id, probes=probes, frames=None if video is None else len(video), fps=first.video_fps,
                     size=None if video is None else video.shape[1:3], decoder=first.video_decoder,
                     pyav_max_diff=pyav_diff, audio_seconds=seconds, audio_peak=peak,
                     audio_field=first.audio_field, passes=(first_pass, second_pass),
                     cache_identical=_same_media(first, second), modes=modes)


def _decode_pass(sample: Sample, settings: MediaSettings, cache: MediaCache) -> tuple[DecodedMedia, DecodePass]:
    hits, misses = cache.hits, cache.misses
    started = time.perf_counter()
    media = decode_sample_media(sample, settings, cache)
    return media, DecodePass(seconds=time.perf_counter() - started, hits=cache.hits - hits,
                             misses=cache.misses - misses)


def _same_media(a: DecodedMedia, b: DecodedMedia) -> bool:
    def same(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))

    return same(a.video, b.video) and same(a.audio, b.audio) and a.video_fps == b.video_fps


def _pyav_max_diff(sample: Sample, media: DecodedMedia, settings: MediaSettings) -> int | None:
    """How far decord's frames are from PyAV's for the same selection (the fallback reader)."""
    if media.video_decoder != DECORD:
        return None
    pyav = decode_video_with_pyav(Path(sample.video), settings)
    if pyav.frames.shape != media.video.shape:
        raise DataError(f"decord gives frames {media.video.shape}, PyAV {pyav.frames.shape}", sample_id=sample.id,
                        field="video", source=sample.video)
    return int(np.abs(pyav.frames.astype(np.int16) - media.video.astype(np.int16)).max())


def _check_mode(assembled: Any, sample: Sample, keep: frozenset[str], seed: int) -> ModeCheck:
    """Prepare, process and score the clip under one retention mode."""
    from omni_msa.prediction import predict_samples

    mode = modality_set_name(keep)
    step = f"keep={mode}"
    builder = assembled.builder
    try:
        item = builder.prepare(sample, MissingnessProtocol(keep=keep, seed=seed).draw(sample.id))
        inputs = builder.collate([item]).model_inputs
        tokens = token_counts(builder.preprocessor, inputs)
        run = predict_samples(assembled, [item], 1, next(assembled.readout.parameters()).device)
    except _CHECK_FAILURES as error:
        return ModeCheck(mode=mode, error=ClipError.of(error, sample.id, step))
    text = prompt_text(item.messages)
    checked = ModeCheck(mode=mode, present=item.present, prompt=text.splitlines()[0],
                        transcript="Transcript:" in text, tokens=tokens, video_size=processed_video_size(inputs))
    if run.errors:
        failed = run.errors[0]
        return replace(checked, error=ClipError(id=sample.id, step=step, reason=failed.reason, field=failed.field,
                                                source=failed.source))
    result = run.results[0]
    return replace(checked, pred=result.pred, status=result.status)


def token_counts(preprocessor: Any, model_inputs: dict[str, Any]) -> dict[str, int]:
    """Tokens per modality in a processed batch: the audio and video placeholder tokens the processor
    expanded, and the text (every other non-padding token: chat template, transcript, instruction)."""
    tokenizer = preprocessor.tokenizer
    ids, mask = model_inputs["input_ids"], model_inputs["attention_mask"].bool()
    kept = ids[mask]
    audio = int((kept == tokenizer.convert_tokens_to_ids(preprocessor.audio_token)).sum())
    video = int((kept == tokenizer.convert_tokens_to_ids(preprocessor.video_token)).sum())
    return {"text": int(mask.sum()) - audio - video, "audio": audio, "video": video}


def processed_video_size(model_inputs: dict[str, Any], patch: int = 14) -> tuple[int, int] | None:
    """Height and width of the video frames after the processor, from its patch grid: equal to the
    decoded size unless the processor resized them again (its own size bounds differ from ours)."""
    grid = model_inputs.get("video_grid_thw")
    if grid is None or len(grid) == 0:
        return None
    _, height, width = (int(x) for x in grid[0])
    return height * patch, width * patch


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text of the user turn (the transcript, the modalities line and the instruction)."""
    user = next(m for m in messages if m["role"] == "user")
    return "\n".join(part["text"] for part in user["content"] if part["type"] == "text")


def media_environment() -> dict[str, str]:
    """What decodes the media here: the readers, their FFmpeg, and whether a `ffmpeg` binary exists."""
    import av
    import decord
    import transformers

    from omni_msa.media_inputs import video_reader

    ffmpeg = shutil.which("ffmpeg")
    libav = ".".join(map(str, av.library_versions["libavcodec"]))
    return {"video reader": video_reader(), "decord": decord.__version__,
            "PyAV": f"{av.__version__} (libavcodec {libav}, inside the wheel)",
            "audio from video": "PyAV (the audio track decoded in-process; no ffmpeg binary needed)",
            "ffmpeg binary": ffmpeg or "not installed", "transformers": transformers.__version__}


# --- the report --------------------------------------------------------------------------------

def write_report(check: MediaCheck, out: str | Path, command: str) -> Path:
    """Write the Markdown report atomically; returns its path."""
    from omni_msa.files import atomic_write_text

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, render_report(check, command))
    return out


def render_report(check: MediaCheck, command: str) -> str:
    checked = len(check.clips)
    failed_ids = {error.id for error in check.errors}
    lines = ["# Real clips through the omni media path", "", f"Command: `{command}`", "",
             f"Manifest `{check.manifest}`: {checked} clips decoded, {len(failed_ids)} with an error (listed "
             f"below). Model: {check.model}, {check.readout} readout. Scores: on complete data (every modality "
             "kept)" + ("." if check.trained else "; an untrained readout: a check that the path runs end to end, "
                        "not a sentiment prediction."),
             "", "Media settings: " + _settings_line(check.settings), "", "## Environment", ""]
    lines += [f"- {key}: {value}" for key, value in check.environment.items()]
    lines += ["", "## Clips", "", *_clip_table(check), "", "## Errors", "", *_error_table(check.errors),
              "", "## Cache", "", *_cache_lines(check.clips), "", "## Missingness: the seven retention modes", "",
              "Each mode keeps a fixed set of modalities (`omni_msa.data.missing.RETENTION_MODES`, no masking "
              "inside the kept ones); a modality the clip does not have cannot be kept.", "",
              *_mode_table(check.clips)]
    return "\n".join(lines) + "\n"


def _settings_line(settings: MediaSettings) -> str:
    return (f"{settings.fps:g} frames per second, {settings.min_frames}-{settings.max_frames} frames, "
            f"{settings.min_pixels}-{settings.max_pixels} pixels per frame (multiples of 28), audio "
            f"{settings.sample_rate} Hz mono, audio from the video track: "
            f"{'yes' if settings.use_audio_in_video else 'no'}, audio cut at {settings.max_audio_seconds} s.")


def _clip_table(check: MediaCheck) -> list[str]:
    rows = ["| id | source | decoded video | audio | tokens text / audio / video | score (status) "
            "| pass 1 | pass 2 |", "|---|---|---|---|---|---|---|---|"]
    for clip in check.clips:
        complete, (first, second) = clip.complete, clip.passes
        rows.append("| " + " | ".join([
            f"`{clip.id}`", _source(clip.probes), _video_cell(clip), _audio_cell(clip), _tokens(complete.tokens),
            _score(complete), f"{first.seconds * 1000:.1f} ms, {first.hits} hits, {first.misses} misses",
            f"{second.seconds * 1000:.1f} ms, {second.hits} hits, {second.misses} misses"
            + ("" if clip.cache_identical else ", DIFFERENT arrays")]) + " |")
    return rows


def _source(probes: dict[str, MediaInfo]) -> str:
    parts = []
    for field, info in probes.items():
        if info.video is not None:
            v = info.video
            parts.append(f"{field}: {v.codec} {v.width}x{v.height}, {_num(v.fps)} fps, {v.frames} frames, "
                         f"{_num(v.seconds)} s")
        if info.audio is not None:
            a = info.audio
            offset = None if info.video is None or None in (a.start, info.video.start) else a.start - info.video.start
            late = f", starts {offset:+.3f} s from the video" if offset else ""
            parts.append(f"{'audio track' if field == 'video' else 'audio'}: {a.codec} {a.sample_rate} Hz x "
                         f"{a.channels} ch, {_num(a.seconds)} s{late}")
    return "; ".join(parts)


def _video_cell(clip: ClipCheck) -> str:
    if clip.frames is None:
        return "none"
    height, width = clip.size
    agree = "" if clip.pyav_max_diff is None else f" (PyAV max diff {clip.pyav_max_diff})"
    processed = clip.complete.video_size
    again = ("" if processed in (None, clip.size)
             else f"; RESIZED AGAIN by the processor to {processed[1]}x{processed[0]}")
    return f"{clip.frames} frames, {clip.fps:.3f} fps, {width}x{height}, {clip.decoder}{agree}{again}"


def _audio_cell(clip: ClipCheck) -> str:
    if clip.audio_seconds is None:
        return "none"
    origin = "the video track" if clip.audio_field == "video" else "the audio file"
    return f"{clip.audio_seconds:.3f} s mono from {origin}, peak {clip.audio_peak:.3f}"


def _tokens(tokens: dict[str, int] | None) -> str:
    return "-" if tokens is None else " / ".join(str(tokens[kind]) for kind in TOKEN_KINDS)


def _score(mode: ModeCheck) -> str:
    return "error" if mode.pred is None else f"{mode.pred:+.4f} ({mode.status})"


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _cell(text: str | None) -> str:
    return "" if text is None else " ".join(str(text).split()).replace("|", "\\|")


def _error_table(errors: list[ClipError]) -> list[str]:
    if not errors:
        return ["None: every clip went through every step."]
    rows = ["| id | step | field | reason | file |", "|---|---|---|---|---|"]
    rows += [f"| `{e.id}` | {e.step} | {e.field or ''} | {_cell(e.reason)} | {_cell(e.source)} |" for e in errors]
    return rows


def _cache_lines(clips: list[ClipCheck]) -> list[str]:
    if not clips:
        return ["No clip decoded."]
    first = [clip.passes[0] for clip in clips]
    second = [clip.passes[1] for clip in clips]
    identical = sum(clip.cache_identical for clip in clips)
    return [f"- pass 1 (empty cache): {sum(p.seconds for p in first):.2f} s, {sum(p.misses for p in first)} misses, "
            f"{sum(p.hits for p in first)} hits",
            f"- pass 2 (from the cache): {sum(p.seconds for p in second):.2f} s, {sum(p.hits for p in second)} hits, "
            f"{sum(p.misses for p in second)} misses; the arrays of {identical} of {len(clips)} clips identical "
            "to pass 1's",
            "- a hit or miss is counted per array: video frames and their rate (2), the audio (1)"]


def _mode_table(clips: list[ClipCheck]) -> list[str]:
    rows = ["| id | keep | remains | the prompt says | transcript in prompt | tokens text / audio / video | score |",
            "|---|---|---|---|---|---|---|"]
    for clip in clips:
        for mode in clip.modes:
            remains = modality_set_name(mode.present) if mode.error is None else "-"
            said = _cell(mode.prompt) if mode.error is None else f"error: {_cell(mode.error.reason)}"
            rows.append(f"| `{clip.id}` | {mode.mode} | {remains} | {said} | "
                        f"{'yes' if mode.transcript else 'no'} | {_tokens(mode.tokens)} | {_score(mode)} |")
    return rows
