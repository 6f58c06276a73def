"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks with a generic 3D face and solvePnP.

Use `face_pose` to compare faces (delegate bank vs. a face in a video): it solves in the
canonical aligned crop with a fixed virtual camera, so framing does not matter. `head_pose`
solves in the image itself with a guessed camera (focal = image width, centre = image centre);
its pitch depends on where the face sits in the frame and on its size: the same Obama photo
reads pitch +13.7° in the 820×1024 frame and −13.4° in its aligned crop.

The 3D model is the common six-point generic face (nose tip, chin, outer eye corners, mouth
corners; millimetre-ish units) in camera axes: x right, y down, z away from the camera, so a
frontal face gives R ~ I. The camera is a pinhole with focal length = image width and the
principal point at the image centre (no calibration is known for arbitrary video).

Conventions (tested): yaw > 0 when the nose points towards the image's right side, roll > 0
when the eye line runs down to the right (clockwise on screen); mirroring an image negates yaw
and roll and keeps pitch. Pitch is nodding; with the generic model frontal faces read about
+3 to +14 degrees, so compare pitches with each other, not with zero.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.visual.align import align_matrix, check_landmarks, transform_points

POSE_POINTS = np.array([30, 8, 36, 45, 48, 54])
MODEL_3D = np.array(
    [
        [0.0, 0.0, 0.0],  # nose tip
        [0.0, 330.0, 65.0],  # chin
        [-225.0, -170.0, 135.0],  # outer corner of the eye on the image's left
        [225.0, -170.0, 135.0],  # outer corner of the eye on the image's right
        [-150.0, 150.0, 125.0],  # mouth corner, image left
        [150.0, 150.0, 125.0],  # mouth corner, image right
    ]
)


class PoseError(ValueError):
    """solvePnP could not find a pose for these landmarks."""


def head_pose(landmarks68: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(yaw, pitch, roll) float32 degrees of the face with ``landmarks68`` in an image (h, w)."""
    pts = check_landmarks(landmarks68)[POSE_POINTS]
    h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise PoseError(f"image_size must be positive (h, w), got {image_size}")
    cam = np.array([[w, 0, w / 2.0], [0, w, h / 2.0], [0, 0, 1]], np.float64)
    # Start in front of the camera, facing it: EPNP/iterative can otherwise land behind it.
    scale = np.linalg.norm(pts[3] - pts[2]) / 450.0
    rvec0 = np.zeros((3, 1))
    tvec0 = np.array([[0.0], [0.0], [w / max(scale, 1e-6)]])
    ok, rvec, _ = cv2.solvePnP(
        MODEL_3D, pts, cam, None, rvec0, tvec0, True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok or not np.isfinite(rvec).all():
        raise PoseError("solvePnP failed on these landmarks")
    rot, _ = cv2.Rodrigues(rvec)
    return euler_from_rotation(rot)


def euler_from_rotation(rot: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees of R = Rz(roll) @ Ry(yaw) @ Rx(pitch), camera axes x right, y down."""
    # Signs flipped so that yaw follows the nose and roll follows the eye line on screen.
    yaw = -np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = -np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return np.array([yaw, pitch, roll], np.float32)


POSE_CROP = 256  # virtual camera: focal = 256 px, face centred, in the canonical crop


def face_pose(landmarks68: np.ndarray) -> np.ndarray:
    """Framing-invariant (yaw, pitch, roll) float32 degrees of a face given its frame landmarks.

    Yaw and pitch come from solvePnP on the landmarks in the canonical crop (fixed virtual
    camera); roll is the in-image rotation that the alignment removed, plus the crop's residual.
    """
    pts = check_landmarks(landmarks68)
    m = align_matrix(pts, POSE_CROP)
    pose = head_pose(transform_points(pts, m), (POSE_CROP, POSE_CROP))
    # The alignment rotates the face upright by angle(m); the face's own roll is its opposite.
    pose[2] -= np.degrees(np.arctan2(m[1, 0], m[0, 0]))
    return pose
