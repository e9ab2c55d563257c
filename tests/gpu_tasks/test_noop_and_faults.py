from __future__ import annotations

import io
import time
from collections import Counter

import av
import pytest

from gpu_tasks.backends.faults import FaultInjectingBackend, FaultRates, parse_fault_spec
from gpu_tasks.backends.noop import NoopBackend
from gpu_tasks.errors import PermanentGpuError, TransientGpuError
from gpu_tasks.types import JobType


@pytest.mark.parametrize("job_type", list(JobType))
def test_noop_succeeds_at_once_for_every_type_with_real_media(job_type: JobType) -> None:
    backend = NoopBackend()
    assert backend.supports(job_type.value)
    call_id = backend.spawn(job_type.value, {})
    status = NoopBackend().poll(call_id)  # any instance, any process: the id says it all
    assert status.state == "succeeded" and status.result is not None and status.gpu_seconds > 0
    for ref in status.result.get("outputs", {}).values():
        assert ref["size_bytes"] == len(ref["data"]) > 0
        if ref["content_type"].startswith(("video/", "audio/")):
            with av.open(io.BytesIO(ref["data"])) as container:
                assert container.streams
    if job_type is JobType.TRANSCRIPTION:
        assert status.result["segments"][0]["words"][0]["word"] == "Hello"


def test_noop_refuses_unknown_types_and_lost_ids() -> None:
    backend = NoopBackend()
    assert not backend.supports("nonsense")
    with pytest.raises(PermanentGpuError):
        backend.spawn("nonsense", {})
    assert backend.poll("noop-tts-nothex").state == "failed"


def test_held_calls_run_until_their_end_which_the_spread_draws_within_its_bounds() -> None:
    backend = NoopBackend(hold_seconds=100, hold_spread_seconds=50)
    t0 = time.time()
    ends = [int(backend.spawn("tts", {}).rsplit("-", 1)[1]) / 1000 - t0 for _ in range(200)]
    assert all(100 <= end <= 151 for end in ends)
    assert max(ends) - min(ends) > 25  # drawn, not one shared end
    held = backend.spawn("tts", {})
    assert NoopBackend().poll(held).state == "running"


def test_fault_spec_parses_rates_per_type() -> None:
    table = parse_fault_spec(
        " transcription:transient=0.2,permanent=0.1,hang=0.02 ; tts:permanent=0.5;*:spawn_transient=.05"
    )
    assert table["transcription"] == FaultRates(transient=0.2, permanent=0.1, hang=0.02)
    assert table["tts"] == FaultRates(permanent=0.5)
    assert table["*"] == FaultRates(spawn_transient=0.05)
    assert parse_fault_spec("") == {}


@pytest.mark.parametrize(
    "spec",
    [
        "transcription",  # no rates
        "transcription:",  # empty body
        "teleport:transient=0.1",  # unknown type
        "tts:explode=0.1",  # unknown fault
        "tts:transient=1.5",  # out of range
        "tts:transient=-0.1",
        "tts:transient=abc",
        "tts:transient=0.6,permanent=0.6",  # sums past 1
        "tts:transient=0.1;tts:permanent=0.1",  # type twice
        "tts:transient=0.1,transient=0.2",  # fault twice
        "tts:transient",  # no '='
    ],
)
def test_malformed_fault_specs_raise_value_error(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_fault_spec(spec)


def outcomes(seed: int, n: int, spec: str, job_type: str = "transcription") -> Counter[str]:
    backend = FaultInjectingBackend(NoopBackend(), spec, seed=seed)
    counts: Counter[str] = Counter()
    for _ in range(n):
        try:
            call_id = backend.spawn(job_type, {})
        except TransientGpuError:
            counts["spawn_transient"] += 1
            continue
        status = backend.poll(call_id)
        if status.state == "running":
            counts["hang"] += 1
        elif status.state == "failed":
            assert status.error is not None
            counts["transient" if status.error.retryable else "permanent"] += 1
        else:
            counts["ok"] += 1
    return counts


def test_fault_rates_are_honoured_with_a_fixed_seed() -> None:
    n = 5000
    counts = outcomes(7, n, "transcription:transient=0.2,permanent=0.1,hang=0.05;*:spawn_transient=0.1")
    # Binomial standard deviation at n=5000 is under 0.6 points: 2 points is > 3 sigma.
    assert abs(counts["transient"] / n - 0.20) < 0.02
    assert abs(counts["permanent"] / n - 0.10) < 0.02
    assert abs(counts["hang"] / n - 0.05) < 0.02
    assert abs(counts["ok"] / n - 0.65) < 0.02
    assert counts["spawn_transient"] == 0, "'*' applies only to types not named"
    other = outcomes(7, n, "transcription:transient=0.2;*:spawn_transient=0.1", job_type="tts")
    assert abs(other["spawn_transient"] / n - 0.10) < 0.02
    assert outcomes(7, 300, "tts:permanent=0.5") == Counter(ok=300), "other types pass through"


def test_fault_injection_is_deterministic_when_seeded() -> None:
    spec = "tts:transient=0.3,permanent=0.3"
    assert outcomes(42, 200, spec, "tts") == outcomes(42, 200, spec, "tts")
    assert outcomes(42, 200, spec, "tts") != outcomes(43, 200, spec, "tts")


def test_injected_faults_are_visible_from_any_instance_and_hangs_never_finish() -> None:
    spawner = FaultInjectingBackend(NoopBackend(), "tts:hang=1.0", seed=1)
    call_id = spawner.spawn("tts", {})
    other = FaultInjectingBackend(NoopBackend(), "", seed=2)
    for _ in range(3):
        assert other.poll(call_id).state == "running"
    other.cancel(call_id)
    permanent = FaultInjectingBackend(NoopBackend(), "tts:permanent=1.0").spawn("tts", {})
    status = other.poll(permanent)
    assert status.error == PermanentGpuError("gpu_oom", "injected fault: out of GPU memory")
    with pytest.raises(PermanentGpuError):
        FaultInjectingBackend(NoopBackend(), "tts:spawn_permanent=1.0").spawn("tts", {})


def test_the_fault_wrapper_announces_as_the_backend_it_wraps() -> None:
    # An announcing backend's hung calls are silent: only the reaper can end them.
    announcing = NoopBackend(announcer=lambda announcement: None)
    assert FaultInjectingBackend(announcing, "tts:hang=1.0").announces
    assert not FaultInjectingBackend(NoopBackend(), "tts:hang=1.0").announces
