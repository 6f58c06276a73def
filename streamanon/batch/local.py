"""Local backend: a pool of worker processes on this machine, no extra dependency.

Each worker is a spawned process (no fork: the driver has threads) with its own pipe, so the
driver always knows which task a worker holds. A worker that dies (killed, out of memory) is
seen through its process sentinel: its task comes back as ``died`` with the signal or exit
code, and a fresh worker takes its place. Models are loaded once per worker (`worker.setup`).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path

from streamanon.batch import worker
from streamanon.batch.backend import Event
from streamanon.batch.worker import Task, WorkerConfig
from streamanon.pipeline import Cancelled

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """CPUs this process may use (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(cpus: int, gb_per_worker: float = 1.0) -> int:
    """One worker per CPU (measured: on 2 cores, 2 workers x 1 thread do 1.3-1.7x the frames
    of 1 worker x 2 threads; docs/batch.md), fewer if memory would not hold them."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(next(x for x in meminfo.splitlines() if x.startswith("MemAvailable")).split()[1])
        by_memory = int(kb / 1024 / 1024 / gb_per_worker)
    except (OSError, StopIteration, ValueError, IndexError):
        by_memory = cpus
    return max(1, min(cpus, by_memory))


def _worker_main(conn: Connection, config: WorkerConfig) -> None:
    stop = threading.Event()
    # Ctrl-C reaches every process of the terminal's group: finish nothing, write nothing,
    # report the task as cancelled (the driver does the same for its own signal).
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        worker.setup(config)
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the batch
        conn.send(("fatal", None, f"{type(exc).__name__}: {exc}"))
        return
    lock = threading.Lock()

    def send(msg: tuple) -> None:
        with lock:
            conn.send(msg)

    conn.send(("ready", None, os.getpid()))
    while not stop.is_set():
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        send(("started", task.id, os.getpid()))
        try:
            result = worker.run_task(
                task, progress=lambda f, s, i=task.id: send(("progress", i, (f, s))), stop=stop
            )
        except (Cancelled, KeyboardInterrupt):
            send(("cancelled", task.id, None))
            return
        send(("done", task.id, result))


class LocalBackend:
    """``workers`` processes; `submit` hands a task to an idle one (the runner keeps at most
    `slots` tasks in flight)."""

    name = "local"

    def __init__(self, config: WorkerConfig, workers: int) -> None:
        self.config = config
        self.slots = max(1, workers)
        self._ctx = mp.get_context("spawn")
        self._procs: dict[int, tuple[mp.Process, Connection]] = {}  # pid → (process, pipe)
        self._busy: dict[int, Task | None] = {}  # pid → task it holds
        self.fatal: str | None = None

    # -- workers -------------------------------------------------------------------------
    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(
            target=_worker_main, args=(child, self.config), name="streamanon-batch-worker"
        )
        p.daemon = True
        p.start()
        child.close()
        self._procs[p.pid] = (p, parent)
        self._busy[p.pid] = None

    def submit(self, task: Task) -> None:
        # Keep one process per slot; spawn lazily so a 3-file batch does not start 16.
        idle = [pid for pid, t in self._busy.items() if t is None]
        if not idle:
            self._spawn()
            idle = [pid for pid, t in self._busy.items() if t is None]
        pid = idle[0]
        self._busy[pid] = task
        try:
            self._procs[pid][1].send(task)
        except (BrokenPipeError, OSError) as exc:
            # It died while idle; its sentinel reports the task as lost, and it is retried.
            log.debug("worker %d gone before it got %s: %s", pid, task.id, exc)

    def events(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        if not self._procs:
            time.sleep(min(timeout, 0.05))
            return out
        handles = {}
        for pid, (p, conn) in self._procs.items():
            handles[conn] = ("conn", pid)
            handles[p.sentinel] = ("exit", pid)
        for h in wait(list(handles), timeout):
            what, pid = handles[h]
            if pid not in self._procs:
                continue
            p, conn = self._procs[pid]
            if what == "conn":
                self._drain(pid, conn, out)
            elif not p.is_alive():
                self._drain(pid, conn, out)  # messages sent just before it exited
                self._reap(pid, out)
        return out

    def _drain(self, pid: int, conn: Connection, out: list[Event]) -> None:
        try:
            while conn.poll():
                kind, tid, payload = conn.recv()
                if kind == "fatal":
                    self.fatal = payload
                elif kind in ("done", "cancelled"):
                    task = self._busy.get(pid)
                    self._busy[pid] = None
                    if task is not None:
                        out.append(Event(kind, task, payload))
                elif kind in ("progress", "started"):
                    task = self._busy.get(pid)
                    if task is not None and task.id == tid:
                        out.append(Event(kind, task, payload))
        except (EOFError, OSError):
            pass

    def _reap(self, pid: int, out: list[Event]) -> None:
        p, conn = self._procs.pop(pid)
        task = self._busy.pop(pid, None)
        p.join(timeout=1)
        conn.close()
        if task is not None:
            code = p.exitcode
            if code is not None and code < 0:
                try:
                    reason = f"worker process killed by {signal.Signals(-code).name}"
                except ValueError:
                    reason = f"worker process killed by signal {-code}"
            else:
                reason = f"worker process exited with code {code}"
            out.append(Event("died", task, reason))

    def running(self) -> int:
        return sum(1 for t in self._busy.values() if t is not None)

    def cancel(self) -> None:
        """Ask every worker to drop its task (SIGINT; they answer ``cancelled`` and exit)."""
        for pid in list(self._procs):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def close(self, timeout: float = 10.0) -> None:
        for _pid, (_p, conn) in self._procs.items():
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + timeout
        for _pid, (p, conn) in list(self._procs.items()):
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(2)
            if p.is_alive():
                p.kill()
                p.join(1)
            conn.close()
        self._procs.clear()
        self._busy.clear()
