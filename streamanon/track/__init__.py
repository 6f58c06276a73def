"""Face tracking: time-based Kalman filters for boxes and 68 landmarks, ByteTrack-style
two-stage association, coasting predictions (fail closed) and optional re-identification."""

from streamanon.track.tracker import FaceTracker, ReidFn, Track

__all__ = ["FaceTracker", "ReidFn", "Track"]
