"""What the runner needs from a place that runs tasks (a local pool, a Ray cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from streamanon.batch.worker import Task


@dataclass
class Event:
    """``kind``: ``started`` (payload: pid), ``progress`` ((frames, media seconds)), ``done``
    (the task's result dict), ``died`` (reason: the worker was lost; retry), ``cancelled``."""

    kind: str
    task: Task
    payload: Any = None


class Backend(Protocol):
    name: str
    slots: int  # tasks that can run at once
    fatal: str | None  # set when workers cannot start at all (e.g. a model file is missing)

    def submit(self, task: Task) -> None: ...

    def events(self, timeout: float) -> list[Event]: ...

    def running(self) -> int: ...

    def cancel(self) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...
