"""Waiting on a studio job from a Gradio handler: queue position, step progress, clear errors."""

from __future__ import annotations

import logging

import gradio as gr

from pipelines.errors import JobCancelled, StudioError

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1


def wait_for(engine, job, progress: gr.Progress | None):
    """Block until `job` ends, updating `progress`; return its result or raise a one-line gr.Error."""
    while not job.wait(POLL_SECONDS):
        if progress is None:
            continue
        ahead = engine.jobs.position(job)
        if ahead:
            progress(0, desc=f"Queued: {ahead} job(s) ahead")
        elif job.note:
            progress(job.step / job.total if job.total else 0, desc=job.note)
        elif job.total:
            progress((job.step, job.total), desc=f"Step {job.step}/{job.total}", unit="steps")
    try:
        return job.outcome()
    except JobCancelled as stopped:
        raise gr.Error(f"Stopped. {stopped}".strip(), title="Stopped") from None
    except StudioError as error:
        raise gr.Error(str(error)) from None
    except Exception as error:  # noqa: BLE001 - logged with its traceback; the user gets one line
        log.error("Job %s failed: %r", job.id, error)
        raise gr.Error(f"Generation failed ({type(error).__name__}): {error}") from None


def session_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)
