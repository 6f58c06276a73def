"""What a worker process does: set up once, then run tasks (a whole file or a video chunk).

The same code runs in a local pool process and in a Ray worker. Per process, `setup` divides
the machine's threads, imports everything and builds one `Anonymizer`, so models are loaded
once; each task then gets a fresh `Anonymizer` (a new tracker and method state: nothing about
a person crosses files) that reuses the first one's detectors (``detectors_from``), which are
`reset()` for it: the multi-scale face detector keeps state between frames (small faces, the
tile sweep, the camera), so it must not carry one file's into the next. The other models
stay in `streamanon.models`' per-process cache.

A task never raises for a bad input: it returns ``{"ok": False, "error": ...}``. Exceptions
that escape are bugs or interrupts; a process that dies is seen by the driver, which retries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamanon.batch.tasks import ChunkSpec, Progress
from streamanon.errors import StreamanonError
from streamanon.io.atomic import remove_dead_partials
from streamanon.pipeline import Cancelled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    id: str  # the file's relative path, plus "#<chunk>" for chunks
    src: str
    dst: str
    kind: str  # "video" | "image"
    chunk: ChunkSpec | None = None
    final_dst: str | None = None  # for a chunk: the joined file it becomes part of
    file: str = ""  # the file's relative path (the journal's key); "" = same as id


@dataclass
class WorkerConfig:
    options: Any  # streamanon.anonymizer.Options
    encode: Any  # streamanon.run.EncodeOptions
    threads: int = 1
    log_level: int = logging.WARNING
    env: dict[str, str] = field(default_factory=dict)
    # Identifies one batch run: a Ray worker receives a fresh copy of the config with every
    # task and must still set itself up only once.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)


_state: dict[str, Any] = {}


def setup(config: WorkerConfig) -> None:
    """Once per process: thread budget, logging, models. Safe to call again (no-op)."""
    if _state.get("key") == config.key:
        return
    n = str(max(1, config.threads))
    # For pools started later (torch's OpenMP, BLAS in a method); ONNX Runtime, OpenCV, torch
    # and x264 get the count directly below.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    os.environ.update(config.env)
    logging.basicConfig(level=config.log_level, format="streamanon worker: %(message)s")
    import cv2

    cv2.setNumThreads(max(1, config.threads))
    opts = deepcopy(config.options)
    if opts.threads is None:
        opts.threads = max(1, config.threads)
    enc = deepcopy(config.encode)
    # x264 and the decoders otherwise each start one thread per core of the machine.
    enc.codec_options.setdefault("threads", n)
    # Imported only now, after the thread budget is in the environment (BLAS and OpenMP pools
    # size themselves when first loaded).
    from streamanon.anonymizer import Anonymizer

    # Built once: a missing model fails here rather than once per file, and every task's
    # anonymizer reuses its detectors.
    first = Anonymizer(deepcopy(opts))
    if "torch" in __import__("sys").modules:
        import torch

        torch.set_num_threads(max(1, config.threads))
    _state.update(key=config.key, options=opts, encode=enc, anonymizer=first)


def run_task(
    task: Task, progress: Progress | None = None, stop: threading.Event | None = None
) -> dict:
    """Run one task; the result is JSON-able: ``ok``, ``report`` or ``error``, ``seconds``."""
    from streamanon.anonymizer import Anonymizer
    from streamanon.run import anonymize_image, anonymize_video

    opts, enc = _state["options"], _state["encode"]
    t0 = time.perf_counter()
    remove_partials(Path(task.dst))
    try:
        anon = Anonymizer(deepcopy(opts), detectors_from=_state["anonymizer"])
        if task.kind == "image":
            report = anonymize_image(
                task.src, task.dst, anon, overwrite=True, keep_metadata=enc.keep_metadata
            )
            if progress:
                progress(1, 0.0)
        elif task.chunk is not None:
            from streamanon.batch.chunks import anonymize_chunk

            report = anonymize_chunk(
                task.src, task.dst, anon, task.chunk,
                final_suffix=Path(task.final_dst or task.dst).suffix,
                encode=enc, progress=progress, stop=stop,
            )  # fmt: skip
        else:
            report = anonymize_video(
                task.src,
                task.dst,
                anon,
                encode=enc,
                overwrite=True,
                progress=_frame_counter(progress),
                stop=stop,
            )
    except Cancelled:
        raise
    except StreamanonError as exc:
        return {"ok": False, "error": str(exc), "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - one file's bug must not end the batch
        log.exception("%s: unexpected error", task.src)
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "seconds": time.perf_counter() - t0,
        }
    return {
        "ok": True,
        "report": asdict(report),
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": _peak_rss_mb(),  # for sizing workers to memory (docs/batch.md)
    }


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _frame_counter(progress: Progress | None):
    """Frame sink → (frames, media seconds) callback, called at most every 0.5 s."""
    if progress is None:
        return None
    state = {"n": 0, "last": 0.0, "t0": None}

    def on_frame(frame) -> None:
        state["n"] += 1
        t = frame.time
        if state["t0"] is None:
            state["t0"] = t
        now = time.monotonic()
        if now - state["last"] >= 0.5:
            state["last"] = now
            progress(state["n"], max(0.0, t - state["t0"]))

    return on_frame


def remove_partials(dst: Path) -> None:
    """Delete temporaries a killed earlier attempt left beside ``dst`` (see io.atomic)."""
    if not dst.parent.is_dir():
        dst.parent.mkdir(parents=True, exist_ok=True)
        return
    remove_dead_partials(dst)  # a live process's temporary file (another run's) is kept
