import threading
import time

import pytest
import torch

from pipelines import runtime
from pipelines.errors import JobCancelled, StudioError
from pipelines.jobs import Job, JobQueue


class FakeVae:
    """Gives NaNs while in half precision, like an fp16 SD VAE overflowing."""

    class config:
        scaling_factor = 0.5
        shift_factor = None

    def __init__(self):
        self.dtype, self.device = torch.float16, torch.device("cpu")

    def to(self, dtype):
        self.dtype = dtype

    def decode(self, latents, return_dict=False):
        out = torch.zeros(latents.shape[0], 3, 8, 8)
        return (out * float("nan") if self.dtype == torch.float16 else out,)


def test_fp16_vae_nans_upcast_and_decode_again():
    vae = FakeVae()
    images = runtime.decode_latents(vae, torch.zeros(1, 4, 1, 1))
    assert vae.dtype == torch.float32
    assert not torch.isnan(images).any() and torch.allclose(images, torch.full_like(images, 0.5))


class FakePipe:
    def __init__(self):
        self.sliced = False
        self.vae = type("Vae", (), {"enable_slicing": lambda s: None, "enable_tiling": self._tile})()
        self.tiled = False

    def _tile(self, *_):
        self.tiled = True

    def enable_attention_slicing(self):
        self.sliced = True


def test_out_of_memory_retries_once_with_slicing_and_tiling():
    pipe, calls = FakePipe(), []

    def work():
        calls.append((pipe.sliced, pipe.tiled))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "image"

    assert runtime.run_with_oom_retry(work, pipe) == "image"
    assert calls == [(False, False), (True, True)]


def test_out_of_memory_twice_is_a_clear_error():
    def work():
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(StudioError, match="Out of memory"):
        runtime.run_with_oom_retry(work, FakePipe())


def test_other_errors_are_not_retried():
    with pytest.raises(KeyError):
        runtime.run_with_oom_retry(lambda: {}["x"], FakePipe())


def test_device_and_precision_choices():
    assert runtime.resolve_device("cpu").type == "cpu"
    assert runtime.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert runtime.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    with pytest.raises(StudioError, match="fp16 is not supported on the CPU"):
        runtime.resolve_dtype("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(StudioError, match="no CUDA GPU"):
            runtime.resolve_device("cuda")
    with pytest.raises(StudioError, match="Unknown device"):
        runtime.RuntimeOptions(device="tpu")


def test_attention_slicing_auto_is_off_without_a_short_gpu():
    assert not runtime.wants_attention_slicing("auto", torch.device("cpu"))
    assert runtime.wants_attention_slicing("on", torch.device("cpu"))


def test_jobs_run_one_at_a_time_in_order():
    queue, log, lock = JobQueue(), [], threading.Lock()
    active = []

    def work(i):
        def fn(job):
            with lock:
                active.append(i)
                assert len(active) == 1, "two jobs ran at once"
            time.sleep(0.02)
            log.append(i)
            with lock:
                active.remove(i)
            return i
        return fn

    jobs = [queue.submit(work(i)) for i in range(8)]
    assert [job.outcome() for job in jobs] == list(range(8))
    assert log == list(range(8))


def test_cancel_stops_running_job_at_next_step_and_frees_worker():
    queue = JobQueue()
    started = threading.Event()

    def slow(job: Job):
        for step in range(1000):
            if job.cancelled:
                raise JobCancelled()
            job.report(step + 1, 1000)
            started.set()
            time.sleep(0.005)
        return "finished"

    job = queue.submit(slow, owner="me")
    queued = queue.submit(slow, owner="me")
    other = queue.submit(lambda job: "other's job", owner="someone else")
    started.wait(5)
    assert queue.cancel(owner="me") == 2
    assert job.wait(5) and job.status == Job.CANCELLED and job.step < 1000
    with pytest.raises(JobCancelled):
        job.outcome()
    assert queued.wait(5) and queued.status == Job.CANCELLED
    assert other.outcome() == "other's job"


def test_a_failing_job_does_not_kill_the_worker():
    queue = JobQueue()
    bad = queue.submit(lambda job: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bad.outcome()
    assert queue.submit(lambda job: "still serving").outcome() == "still serving"


def test_out_of_memory_while_decoding_retries_with_tiled_vae(engine, monkeypatch):
    from conftest import TINY
    from pipelines import denoise

    vae = engine.manager.pipeline(engine.manager.entry(TINY), "text2image").vae
    real_decode, calls = runtime.decode_latents, []

    def flaky(vae_, latents):
        calls.append(vae_.use_tiling)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory while decoding")
        return real_decode(vae_, latents)

    monkeypatch.setattr(denoise, "decode_latents", flaky)
    try:
        images = denoise.decode_to_pil(vae, torch.zeros(1, 4, 8, 8))
    finally:
        vae.disable_tiling()
        vae.disable_slicing()
    side = 8 * 2 ** (len(vae.config.block_out_channels) - 1)
    assert calls == [False, True] and images[0].size == (side, side)
