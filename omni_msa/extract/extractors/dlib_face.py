"""Vision: dlib's 68-point face landmarks per frame, normalised, with geometric expression measures
(`omni_msa.extract.face`): 145 per frame, a zero row for a frame without a face.

The detector is dlib's HOG frontal face detector (inside dlib); the 68-point shape predictor is
the file `face-recognition-models` ships, read by path (importing that package needs
`pkg_resources`, gone from setuptools 81). Where a frame holds several faces the largest is used.
mediapipe's face mesh is not used: its last release with the legacy models inside the wheel
(0.10.21) needs numpy < 2 and protobuf < 5.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.record import DataError
from omni_msa.extract.base import ModalityExtractor, Rows, VideoClip, register_extractor, zero_rows
from omni_msa.extract.face import FACE_DIM, LANDMARKS, face_features

MODELS_PACKAGE = "face_recognition_models"


def predictor_path(name: str) -> Path:
    """The shape predictor file `name` inside the installed `face-recognition-models` package."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the face landmark model is not installed: pip install face-recognition-models "
                        "(scripts/install.sh installs it)", field="vision")
    path = Path(spec.submodule_search_locations[0]) / "models" / f"{name}.dat"
    if not path.is_file():
        raise DataError(f"no landmark model {path.name} in {path.parent}", field="vision", source=path)
    return path


@lru_cache(maxsize=2)
def _models(predictor: str) -> tuple[Any, Any]:
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path(predictor)))


def frame_times(count: int, fps: float) -> np.ndarray:
    """Seconds of each sampled frame: evenly spread over the clip's n / fps seconds, as they are picked."""
    return np.linspace(0.0, count / fps, count) if count > 1 else np.zeros(count)


def landmarks(frame: np.ndarray, params: Mapping[str, Any]) -> np.ndarray | None:
    """68 x 2 landmarks of the largest face in an RGB frame, or None where no face is found."""
    detector, predictor = _models(params["predictor"])
    image = np.ascontiguousarray(frame)
    faces = detector(image, params["upsample"])
    if len(faces) == 0:
        return None
    face = max(faces, key=lambda box: box.width() * box.height())
    shape = predictor(image, face)
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(LANDMARKS)], dtype=np.float64)


def extract(clip: VideoClip, params: Mapping[str, Any]) -> Rows:
    rows = np.zeros((len(clip.frames), FACE_DIM), np.float32)
    detected = np.zeros(len(clip.frames), bool)
    for i, frame in enumerate(clip.frames):
        points = landmarks(frame, params) if frame.any() else None   # a black (masked) frame has no face
        if points is not None:
            try:
                rows[i], detected[i] = face_features(points), True
            except ValueError:   # degenerate landmarks (both eyes on one point): no usable face
                continue
    return Rows(values=rows, input_length=len(clip.frames), times=frame_times(len(clip.frames), clip.fps),
                detected=detected)


def dropped(n: int, rate: float, params: Mapping[str, Any]) -> Rows:
    return zero_rows(n, FACE_DIM, input_length=n, times=frame_times(n, rate), vision=True)


DLIB_FACE = register_extractor(ModalityExtractor(
    name="dlib_face68", modality="vision", dim=FACE_DIM, version="1", extract=extract, dropped=dropped,
    params={"predictor": "shape_predictor_68_face_landmarks", "upsample": 0},
    packages=("dlib-bin", "face-recognition-models"),
    description="dlib 68 face landmarks, normalised, + mouth, eyes, brows, head pose (145 per frame)"))
