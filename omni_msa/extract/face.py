"""Face features from 68 landmarks (dlib / iBUG 300-W numbering), numpy only.

Landmarks are centred on their mean and divided by the inter-ocular distance (between the two
eye centres), so a face's position and size in the frame do not change them; the geometric
measures use the same scale. "Left" and "right" are the image's sides (landmarks 36-41 are the
eye on the image's left). Head pose comes from a scaled-orthographic fit of a generic 3-D face
(six points) to the landmarks: good to a few degrees for a face filling part of the frame, which
is what a per-frame expression feature needs; it is not a calibrated camera pose.
"""

from __future__ import annotations

import numpy as np

LANDMARKS = 68
GEOMETRY_NAMES: tuple[str, ...] = ("mouth_open", "mouth_width", "eye_open_left", "eye_open_right",
                                   "brow_raise_left", "brow_raise_right", "yaw", "pitch", "roll")
FACE_DIM = 2 * LANDMARKS + len(GEOMETRY_NAMES)

_EYES = (np.arange(36, 42), np.arange(42, 48))
_BROWS = (np.arange(17, 22), np.arange(22, 27))
_MOUTH_CORNERS, _INNER_LIPS = (48, 54), (62, 66)
# nose tip, chin, outer eye corners, mouth corners; a generic head in arbitrary units, x to the
# image's right, y up, z towards the camera (the widely used six-point model)
_POSE_POINTS = np.array([30, 8, 36, 45, 48, 54])
_POSE_MODEL = np.array([[0.0, 0.0, 0.0], [0.0, -330.0, -65.0], [-225.0, 170.0, -135.0], [225.0, 170.0, -135.0],
                        [-150.0, -150.0, -125.0], [150.0, -150.0, -125.0]])


def face_features(points: np.ndarray) -> np.ndarray:
    """The 145-d row of one face: 136 normalised landmark coordinates (x0, y0, x1, ...), then the
    measures of `GEOMETRY_NAMES`."""
    points = _checked(points)
    scale = inter_ocular_distance(points)
    normalised = (points - points.mean(axis=0)) / scale
    return np.concatenate([normalised.reshape(-1), geometry(points)]).astype(np.float32)


def inter_ocular_distance(points: np.ndarray) -> float:
    left, right = (points[eye].mean(axis=0) for eye in _EYES)
    distance = float(np.linalg.norm(right - left))
    if distance <= 0:
        raise ValueError("degenerate landmarks: both eyes at one point")
    return distance


def geometry(points: np.ndarray) -> np.ndarray:
    """Mouth opening (inner lips) and width (corners), eye openness (the eye aspect ratio: mean
    lid distance over eye width), brow raise (brow centre to eye centre), all but the eye ratio
    over the inter-ocular distance; then yaw, pitch, roll in degrees."""
    points = _checked(points)
    scale = inter_ocular_distance(points)
    mouth_open = _distance(points, *_INNER_LIPS) / scale
    mouth_width = _distance(points, *_MOUTH_CORNERS) / scale
    eyes = [_eye_aspect_ratio(points[eye]) for eye in _EYES]
    brows = [float(np.linalg.norm(points[brow].mean(axis=0) - points[eye].mean(axis=0))) / scale
             for brow, eye in zip(_BROWS, _EYES)]
    return np.array([mouth_open, mouth_width, *eyes, *brows, *head_pose(points)], dtype=np.float64)


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, 0 for a frontal upright face: yaw > 0 turns the nose towards the
    image's right, pitch > 0 turns it down, roll > 0 turns the face anticlockwise as the image is shown."""
    image = _checked(points)[_POSE_POINTS] * np.array([1.0, -1.0])   # y up, as the model
    model = _POSE_MODEL - _POSE_MODEL.mean(axis=0)
    projection = np.linalg.lstsq(model, image - image.mean(axis=0), rcond=None)[0].T   # 2 x 3 = scale * R[:2]
    first = projection[0] / np.linalg.norm(projection[0])
    second = projection[1] - (projection[1] @ first) * first
    second /= np.linalg.norm(second)
    rotation = np.stack([first, second, np.cross(first, second)])
    return rotation_angles(rotation)


def rotation_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(yaw) Rx(pitch)."""
    pitch = np.arctan2(rotation[2, 1], rotation[2, 2])
    yaw = np.arctan2(-rotation[2, 0], np.hypot(rotation[2, 1], rotation[2, 2]))
    roll = np.arctan2(rotation[1, 0], rotation[0, 0])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rz(roll) Ry(yaw) Rx(pitch) from degrees, the inverse of `rotation_angles`."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_model_points() -> tuple[np.ndarray, np.ndarray]:
    """The landmark indices of the head-pose model and its 3-D points (x right, y up, z to the camera)."""
    return _POSE_POINTS.copy(), _POSE_MODEL.copy()


def _eye_aspect_ratio(eye: np.ndarray) -> float:
    lids = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    width = np.linalg.norm(eye[0] - eye[3])
    return float(lids / (2.0 * width)) if width > 0 else 0.0


def _distance(points: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a] - points[b]))


def _checked(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (LANDMARKS, 2):
        raise ValueError(f"expected {LANDMARKS} x 2 landmarks, got shape {points.shape}")
    return points
