"""One GPU worker, a FIFO queue, per-step progress, and interrupt at the next step.

Every generation, from any tab or the REST API, is a `Job` run by the single worker thread, so two
jobs never use the GPU at once. A capability's `run(..., progress)` calls `progress.report(step,
total)` from its step callback and stops at the next step once `progress.cancelled` is true.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import Any, Callable

from pipelines.errors import JobCancelled, StudioError

log = logging.getLogger(__name__)


_worker = threading.local()  # the job the worker thread is running


def running_job() -> "Job | None":
    """The job being run on this thread (None outside the worker): for work deep inside a job, such as
    a model download, that reports its own progress."""
    return getattr(_worker, "job", None)


class Progress:
    """What a capability's run sees: report steps, and check whether it was asked to stop. `note`, when
    set, says what the reported count is instead of steps (e.g. bytes of a download)."""

    def __init__(self):
        self.step = 0
        self.total = 0
        self.note = ""
        self._cancel = threading.Event()

    def report(self, step: int, total: int) -> None:
        self.step, self.total = step, total

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


class StageProgress:
    """One stage of a bigger job (a batch, a pass): its step reports map onto the job's whole range."""

    def __init__(self, parent, index: int, count: int):
        self.parent, self.index, self.count = parent, index, count

    def report(self, step: int, total: int) -> None:
        self.parent.report(self.index * total + step, self.count * total)

    @property
    def cancelled(self) -> bool:
        return self.parent.cancelled


class Job(Progress):
    QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"

    def __init__(self, job_id: int, fn: Callable[["Job"], Any], owner: str | None, label: str):
        super().__init__()
        self.id, self.fn, self.owner, self.label = job_id, fn, owner, label
        self.status = Job.QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def outcome(self):
        """The result of a finished job; a failure is re-raised, a cancel raises JobCancelled."""
        self.wait()
        if self.status == Job.CANCELLED:
            raise JobCancelled(f"Stopped at step {self.step}/{self.total}.")
        if self.error is not None:
            raise self.error
        return self.result


class JobQueue:
    def __init__(self):
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self.current: Job | None = None
        self.completed = 0
        threading.Thread(target=self._work, name="gpu-worker", daemon=True).start()

    def submit(self, fn: Callable[[Job], Any], owner: str | None = None, label: str = "") -> Job:
        with self._cond:
            job = Job(next(self._ids), fn, owner, label)
            self._queue.append(job)
            self._cond.notify()
            return job

    def position(self, job: Job) -> int:
        """0 while running (or done), n when n jobs run or wait before it."""
        with self._cond:
            if job in self._queue:
                return list(self._queue).index(job) + (1 if self.current else 0)
            return 0

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self.current else 0)

    def cancel(self, owner: str | None = None) -> int:
        """Stop the running job and drop queued ones — only `owner`'s, when one is given."""
        with self._cond:
            jobs = list(self._queue) + ([self.current] if self.current else [])
            chosen = [j for j in jobs if owner is None or j.owner == owner]
            for job in chosen:
                job.cancel()
            return len(chosen)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job = self._queue.popleft()
                self.current = job
            self._run(job)
            with self._cond:
                self.current = None
                self.completed += 1

    @staticmethod
    def _run(job: Job) -> None:
        try:
            if job.cancelled:
                raise JobCancelled()
            job.status = Job.RUNNING
            _worker.job = job
            job.result = job.fn(job)
            job.status = Job.CANCELLED if job.cancelled and job.result is None else Job.DONE
        except JobCancelled:
            job.status = Job.CANCELLED
        except StudioError as error:
            job.status, job.error = Job.FAILED, error
        except Exception as error:  # noqa: BLE001 - the worker must survive any job
            log.exception("Job %s (%s) failed", job.id, job.label)
            job.status, job.error = Job.FAILED, error
        finally:
            _worker.job = None
            job._done.set()
