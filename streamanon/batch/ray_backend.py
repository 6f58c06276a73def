"""Ray backend: each task is a Ray core task; `--ray` starts a local cluster, `--ray ADDR` joins.

Tasks ask for ``num_cpus`` (the worker's thread budget) and ``num_gpus`` where the method runs
on a GPU. Ray reuses its worker processes across tasks of one job, so `worker.setup` (models)
runs once per worker process, as in the local pool. Ray's own retries are off
(``max_retries=0``): the runner retries a task whose worker died, counts the attempts and
records the reason, the same way for both backends.

Inputs and OUT_DIR must be at the same path on every node (one machine, or a shared file
system); only task descriptions and small reports travel through Ray.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from streamanon.batch import worker
from streamanon.batch.backend import Event
from streamanon.batch.local import cpu_count
from streamanon.batch.worker import Task, WorkerConfig
from streamanon.errors import InputError, MissingExtraError

log = logging.getLogger(__name__)


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingExtraError('--ray needs Ray: pip install "streamanon[ray]"') from None
    return ray


def _run(config: WorkerConfig, task: Task, board: Any) -> dict:
    """Body of the Ray task (runs in a Ray worker process)."""
    try:
        worker.setup(config)
    except Exception as exc:  # noqa: BLE001 - every worker would fail the same way
        return {"ok": False, "fatal": True, "error": f"{type(exc).__name__}: {exc}"}

    def progress(frames: int, seconds: float) -> None:
        board.update.remote(task.id, frames, seconds)

    return worker.run_task(task, progress=progress)


class _Board:
    """Frames written so far per running task (one tiny actor; polled by the driver)."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[int, float]] = {}

    def update(self, tid: str, frames: int, seconds: float) -> None:
        self.state[tid] = (frames, seconds)

    def take(self) -> dict[str, tuple[int, float]]:
        out, self.state = self.state, {}
        return out


class RayBackend:
    name = "ray"

    def __init__(
        self,
        config: WorkerConfig,
        address: str | None,
        *,
        workers: int | None = None,
        threads: int | None = None,
        gpus: float | None = None,
        wants_gpu: bool = False,
    ) -> None:
        ray = _ray()
        self._ray = ray
        self.config = config
        self.fatal: str | None = None
        self._owns = address in (None, "local")
        try:
            if self._owns:
                ray.init(
                    num_cpus=cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                    log_to_driver=False, object_store_memory=256 * 1024 * 1024,
                )  # fmt: skip
            else:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"--ray {address or ''}: cannot start or reach Ray ({msg})") from None
        res = ray.cluster_resources()
        cpus = max(1, int(res.get("CPU", 1)))
        self.cluster_gpus = float(res.get("GPU", 0))
        if threads is None:
            threads = max(1, cpus // workers) if workers else 1  # as local: 1 CPU each
        self.threads = threads
        self.slots = workers or max(1, cpus // threads)
        # A method with a neural network per face (the torch extra: swap, ida) gets one GPU
        # per worker when the cluster has GPUs; classic redaction is CPU-bound (decode,
        # detect at 640 px, encode) and asks for none.
        if gpus is None:
            gpus = 1.0 if wants_gpu and self.cluster_gpus else 0.0
        self.gpus = gpus
        if self.gpus and not self.cluster_gpus:
            raise InputError(f"--gpus-per-worker {self.gpus}: the Ray cluster has no GPUs")
        config.threads = threads
        self._config_ref = ray.put(config)
        self._remote = ray.remote(_run)
        self._board = ray.remote(num_cpus=0)(_Board).remote()
        self._refs: dict[Any, Task] = {}
        self._last_poll = 0.0

    def describe(self) -> str:
        res = self._ray.cluster_resources()
        return (
            f"Ray {self._ray.__version__}: {len(self._ray.nodes())} node(s), "
            f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; "
            f"{self.slots} worker(s) x {self.threads} CPU, {self.gpus:g} GPU each"
        )

    def submit(self, task: Task) -> None:
        ref = self._remote.options(
            num_cpus=self.threads,
            num_gpus=self.gpus,
            max_retries=0,  # the runner retries, counting attempts
            name=f"streamanon:{task.id}",
        ).remote(self._config_ref, task, self._board)
        self._refs[ref] = task

    def running(self) -> int:
        return len(self._refs)

    def events(self, timeout: float) -> list[Event]:
        ray = self._ray
        out: list[Event] = []
        if self._refs:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        else:
            time.sleep(min(timeout, 0.05))
            ready = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                out.append(Event("cancelled", task))
                continue
            except ray.exceptions.RayTaskError as exc:
                # Raised inside our code (not a bad input: those are returned): no retry.
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                if isinstance(cause, KeyboardInterrupt):
                    out.append(Event("cancelled", task))
                else:
                    msg = f"{type(cause).__name__}: {str(cause).strip().splitlines()[0]}"
                    out.append(Event("done", task, {"ok": False, "error": msg}))
                continue
            except ray.exceptions.RayError as exc:
                # The worker (or its node) died: killed, out of memory, node lost.
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append(Event("died", task, f"{type(exc).__name__}: {first}"[:300]))
                continue
            if result.get("fatal"):
                self.fatal = result["error"]
            out.append(Event("done", task, result))
        now = time.monotonic()
        if self._refs and now - self._last_poll >= 0.5:
            self._last_poll = now
            try:
                state = ray.get(self._board.take.remote(), timeout=5)
            except ray.exceptions.RayError:
                state = {}
            live = {t.id: t for t in self._refs.values()}
            for tid, payload in state.items():
                if tid in live:
                    out.append(Event("progress", live[tid], payload))
        return out

    def cancel(self) -> None:
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                log.debug("cancel: %s", exc)

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._ray.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutting down after an error
            log.debug("ray.shutdown: %s", exc)
