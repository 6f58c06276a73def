"""Reusable work arrays for the per-face passes at frame scale (`swap`'s paste).

On frames above 1080p the pipeline gives every buffer of 1 MiB and more its own memory
mapping (`pipeline.map_large_buffers`), so a fresh float patch of a large face costs its page
faults on every frame; a few named arrays kept by the method and reused do not.
"""

from __future__ import annotations

import numpy as np

# Larger arrays are not kept (a face filling a 4K frame would hold ~100 MB per name).
KEEP_MAX_BYTES = 16 * 2**20


class Scratch:
    """Named work arrays, grown as needed and reused; contents are undefined on `get`."""

    def __init__(self, keep_max_bytes: int = KEEP_MAX_BYTES) -> None:
        self.keep_max_bytes = keep_max_bytes
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype`` (a view of the buffer ``name``)."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape))
        if n * dtype.itemsize > self.keep_max_bytes:
            return np.empty(shape, dtype)
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.size < n:
            buf = self._bufs[name] = np.empty(n, dtype)
        return buf[:n].reshape(shape)
