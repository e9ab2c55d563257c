from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_tasks.engines import load_engine, weight_repos
from gpu_tasks.errors import (
    PERMANENT_CODES,
    TRANSIENT_CODES,
    GpuError,
    PermanentGpuError,
    TransientGpuError,
    classify_exception,
)
from gpu_tasks.types import CPU_JOB_TYPES, JOB_TYPES, GpuClass, JobType, Weights, get_spec


def test_error_kinds_carry_retryable_by_default() -> None:
    assert TransientGpuError("capacity").retryable is True
    assert PermanentGpuError("gpu_oom").retryable is False
    assert {"gpu_oom", "invalid_media", "model_unavailable", "invalid_input", "internal", "timeout",
            "feature_unavailable"} <= PERMANENT_CODES  # fmt: skip
    assert {"network", "capacity", "backend_error"} <= TRANSIENT_CODES


def test_unknown_or_misplaced_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        PermanentGpuError("network")
    with pytest.raises(ValueError):
        TransientGpuError("gpu_oom")
    with pytest.raises(ValueError):
        GpuError("made_up")


@pytest.mark.parametrize("error", [TransientGpuError("network", "down"), PermanentGpuError("timeout", "slow")])
def test_errors_round_trip_through_dicts_and_pickle(error: GpuError) -> None:
    assert GpuError.from_dict(error.to_dict()) == error
    assert pickle.loads(pickle.dumps(error)) == error


def test_from_dict_degrades_unknown_codes_to_internal() -> None:
    error = GpuError.from_dict({"code": "from_the_future", "message": "x", "kind": "permanent"})
    assert isinstance(error, PermanentGpuError)
    assert error.code == "internal"


def test_classify_exception_recognises_out_of_memory() -> None:
    class OutOfMemoryError(RuntimeError):
        pass

    assert classify_exception(OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")).code == "gpu_oom"
    assert classify_exception(ValueError("boom")).code == "internal"
    original = TransientGpuError("network")
    assert classify_exception(original) is original


def test_a_host_memory_error_is_internal_whatever_its_text_says() -> None:
    """A larger GPU gives no more host memory: Python's MemoryError never climbs a GPU ladder."""
    for exc in (MemoryError(), MemoryError("out of memory error"), MemoryError("CUDA out of memory")):
        error = classify_exception(exc)
        assert (error.code, error.retryable) == ("internal", False), exc
        assert error.message.startswith("host memory exhausted")


def test_every_job_type_has_a_spec_matching_the_seed() -> None:
    assert set(JOB_TYPES) == set(JobType)
    assert get_spec("transcription").gpu is GpuClass.A10G
    assert get_spec("transcription").time_limit_s == 600
    assert get_spec("lip-sync").gpu is GpuClass.A10G
    assert get_spec("lip-sync").time_limit_s == 600
    assert get_spec("tts").gpu is GpuClass.L4
    assert get_spec("tts").time_limit_s == 120
    assert get_spec("audio-generation").gpu is GpuClass.L4
    video = get_spec("video-generation")
    # The seed's A100-80GB and 10 containers; its 900 s cannot hold Wan2.1-14B's default clip
    # (about 1,370 s by the engine's cost model), so the limit is the model's (test_video_generation.py).
    assert (video.gpu, video.time_limit_s, video.max_concurrency) == (GpuClass.A100_80GB, 1800, 10)
    assert get_spec("gaze-redirection").max_concurrency == 50
    assert get_spec("tts").max_concurrency == 100
    assert {t.value for t in CPU_JOB_TYPES} == {"render", "compression", "voice-consent", "likeness-consent"}
    for spec in JOB_TYPES.values():
        assert spec.time_limit_s > 0
        assert spec.modal_function.isidentifier()


def test_unknown_job_type_is_invalid_input() -> None:
    with pytest.raises(PermanentGpuError) as info:
        get_spec("teleportation")
    assert info.value.code == "invalid_input"


def test_implemented_types_resolve_to_engines_and_the_rest_are_unavailable() -> None:
    for job_type, spec in JOB_TYPES.items():
        for where, implemented in (("local", spec.local), ("modal", spec.modal)):
            if implemented:
                assert callable(load_engine(job_type, where))
            else:
                with pytest.raises(PermanentGpuError) as info:
                    load_engine(job_type, where)
                assert info.value.code == "feature_unavailable"
    # A model engine runs locally where its weights are (gpu_tasks/types.py names the folder);
    # the rest run a model shipped in a package, or ffmpeg.
    model_engines = {"image-generation", "audio-generation", "video-query", "video-generation", "lip-sync",
                     "performance-cloning", "gaze-redirection", "likeness-consent"}
    assert {t.value for t, s in JOB_TYPES.items() if s.local} == {"transcription", "tts", "render", "compression",
                                                                  "voice-consent", *model_engines}
    # The types the Modal app does not run: the consent checks stay on the worker (gpu_tasks/backends).
    assert {t.value for t, s in JOB_TYPES.items() if not s.modal} == {"voice-consent", "likeness-consent"}
    assert {t.value for t, s in JOB_TYPES.items() if s.weights is not None} == model_engines


def test_importing_gpu_tasks_pulls_in_no_heavy_library() -> None:
    # The worker imports the client side at start-up; its idle memory budget is 200 MB.
    code = (
        "import sys, gpu_tasks.backends, gpu_tasks.backends.local, gpu_tasks.backends.modal_backend, "
        "gpu_tasks.backends.noop, gpu_tasks.backends.faults, gpu_tasks.engines.transcription, "
        "gpu_tasks.engines.transcription_hf, gpu_tasks.engines.tts_f5, gpu_tasks.engines.render\n"
        "heavy = {'torch', 'transformers', 'faster_whisper', 'ctranslate2', 'modal', 'numpy', 'django'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def test_each_model_engine_looks_for_the_weights_its_type_declares() -> None:
    from gpu_tasks.engines import lip_sync
    from gpu_tasks.engines.liveportrait import loader

    declared = {t.value: s.weights for t, s in JOB_TYPES.items()}
    assert declared["lip-sync"] == Weights(*lip_sync.WEIGHTS)
    assert declared["performance-cloning"] == declared["gaze-redirection"] == Weights(*loader.WEIGHTS)
    for job_type, weights in declared.items():
        if weights is not None:
            assert weights.folder in weight_repos(job_type), f"download_models fetches {job_type}'s folder"
