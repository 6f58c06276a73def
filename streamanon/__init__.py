"""streamanon: take the identity out of faces in video, streams and images."""

from streamanon.types import Detections, FaceCrop, Frame

__version__ = "0.1.0"

__all__ = ["Detections", "FaceCrop", "Frame", "__version__"]
