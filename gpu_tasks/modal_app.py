"""The Modal app: one function per job type, with the GPU class, timeout and concurrency of `types`.

Deploy (from the repository root, with a Modal token configured: `modal token set ...`):

    modal secret create auteur-huggingface HF_TOKEN=hf_...     # once; read access to the model repos,
                                                               # with pyannote's conditions accepted
    modal run gpu_tasks/modal_app.py::download_models          # once: weights onto the Volume
    modal deploy gpu_tasks/modal_app.py                         # every release

The worker then runs with `AUTEUR_GPU_BACKEND=modal` (and `MODAL_TOKEN_ID`/`MODAL_TOKEN_SECRET`);
`gpu_tasks.backends.modal_backend` spawns these functions by name (`auteur-gpu` / `transcription`,
...), polls their calls and cancels them.

- Every call announces its progress and its end on the `<app>-events` modal.Queue
  (`gpu_tasks.announce`); `manage.py gpu_events` drains it, so nothing polls a call.
- Every function takes the payload dict of `gpu_tasks.contract` and returns an outcome record
  (`gpu_tasks.modal_runtime.run_call`): failures come back classified, not raised.
- GPU classes, timeouts and `max_containers` come from `gpu_tasks.types.JOB_TYPES` (A100-80GB
  at most 10 containers, A10G 50, L4 100). A type with a GPU ladder has one function more per
  larger class (`lip_sync_on_l40s`, `lip_sync_on_a100_80gb`): a call out of GPU memory is
  spawned again there by the jobs app. Those functions share their class's container limit
  (`ladder_max_containers`: 2 each of the five types that climb to an A100-80GB).
- Model weights live on the `auteur-models` Volume mounted at /models (the weights cache); the
  hub is switched off at inference time (`HF_HUB_OFFLINE=1`), so a container never downloads
  weights on a user's clock.
- Images are built from requirements/gpu.txt (torch, transformers, pyannote, F5-TTS); render and
  compression use a small CPU image with ffmpeg and the font of text overlays and captions.
- Every type's engine is deployed. A call whose weights are not on the Volume yet fails
  `model_unavailable` (permanent, refunded) until `download_models` puts them there.

Runtime is Python 3.11, as everywhere in this codebase.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import modal

from gpu_tasks.backends.modal_backend import DEFAULT_APP_NAME, PROGRESS_DICT_NAME, events_queue_name
from gpu_tasks.types import GPU_CLASS_MAX_CONCURRENCY, JOB_TYPES, GpuClass, JobType, JobTypeSpec

APP_NAME = os.environ.get("AUTEUR_MODAL_APP", DEFAULT_APP_NAME)
MODELS_PATH = "/models"
_ROOT = Path(__file__).resolve().parent.parent

app = modal.App(APP_NAME)
models_volume = modal.Volume.from_name("auteur-models", create_if_missing=True)

_runtime_env = {"HF_HOME": f"{MODELS_PATH}/hf", "HF_HUB_OFFLINE": "1", "AUTEUR_MODELS_DIR": MODELS_PATH}
gpu_image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("ffmpeg", "libsndfile1")
    .pip_install_from_requirements(str(_ROOT / "requirements" / "gpu.txt"))
    .env(_runtime_env)
    .add_local_python_source("gpu_tasks")
)
cpu_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("imageio-ffmpeg==0.8.1", "av==17.0.1", "requests==2.34.2", "numpy==2.4.6", "font-roboto==0.0.1")
    .env(_runtime_env)
    .add_local_python_source("gpu_tasks")
)


def function_options(spec: JobTypeSpec, gpu: GpuClass | None = None) -> dict[str, Any]:
    """The `@app.function(...)` options of a job type, on its own GPU class or on `gpu` (a larger
    class of its ladder, with that class's container limit)."""
    gpu = gpu or spec.gpu
    options: dict[str, Any] = {
        "timeout": spec.time_limit_s,
        "max_containers": spec.max_concurrency if gpu is spec.gpu else ladder_max_containers(gpu),
        "retries": 0,  # retries are the jobs app's decision (it knows the job's attempts and refunds)
    }
    if gpu is GpuClass.CPU:
        options.update(image=cpu_image, cpu=4.0, memory=4096)
    else:
        options.update(image=gpu_image, gpu=gpu.value, volumes={MODELS_PATH: models_volume})
    return options


def ladder_max_containers(gpu: GpuClass) -> int:
    """Containers each type's function on a larger class of its ladder may run: the class's limit
    shared among every ladder function on it (Modal counts each function apart), at least one, so
    the calls that climb there add at most the class's limit again, whatever the number of types."""
    sharing = sum(gpu in spec.gpu_ladder for spec in JOB_TYPES.values())
    return max(1, GPU_CLASS_MAX_CONCURRENCY[gpu] // max(1, sharing))


def _run(job_type: JobType, payload: dict[str, Any]) -> dict[str, Any]:
    from gpu_tasks.modal_runtime import QueueAnnouncer, run_call

    call_id = modal.current_function_call_id()
    sink = None
    announcer = None
    if call_id:
        progress = modal.Dict.from_name(PROGRESS_DICT_NAME, create_if_missing=True)
        # The call announces its progress and end here, so the worker side never polls it.
        announcer = QueueAnnouncer(modal.Queue.from_name(events_queue_name(APP_NAME), create_if_missing=True), call_id)

        def sink(pct: float) -> None:
            progress.put(call_id, pct)
            announcer.progress(pct)

    record = run_call(job_type.value, payload, progress=sink)
    if announcer is not None:
        announcer.outcome(record)
    return record


def _register(spec: JobTypeSpec, gpu: GpuClass) -> modal.Function:
    """One Modal function per job type and GPU class of its ladder, named after both (`lip_sync`
    on its own class, `lip_sync_on_l40s` on a larger one), with the type's options.

    Declared from the table rather than written out, so a new type needs nothing here; such
    functions are not module-level definitions, so Modal ships them serialized (cloudpickle).
    """

    def run(payload: dict[str, Any]) -> dict[str, Any]:
        return _run(spec.job_type, payload)

    name = spec.modal_function_on(gpu.value)
    run.__name__ = run.__qualname__ = name
    return app.function(name=name, serialized=True, **function_options(spec, gpu))(run)


FUNCTIONS: dict[str, modal.Function] = {
    s.modal_function_on(gpu.value): _register(s, gpu) for s in JOB_TYPES.values() for gpu in s.gpu_classes
}
globals().update(FUNCTIONS)  # `modal_app.tts` and `modal run gpu_tasks/modal_app.py::tts` name them


@app.function(
    image=gpu_image,
    volumes={MODELS_PATH: models_volume},
    secrets=[modal.Secret.from_name("auteur-huggingface")],
    timeout=3600,
)
def download_models() -> list[str]:
    """Put every model's weights on the Volume (run once, and after changing a model).

    The same repositories as `manage.py download_models`: each engine declares its own (REPOS).
    """
    os.environ["HF_HUB_OFFLINE"] = "0"  # the one place allowed to reach the hub
    from huggingface_hub import snapshot_download

    from gpu_tasks.engines import weight_repos
    from gpu_tasks.engines.weights import download

    token = os.environ.get("HF_TOKEN")
    fetched = [
        str(download(folder, repo, into=Path(MODELS_PATH), token=token))
        for job_type in JOB_TYPES
        for folder, repo in weight_repos(job_type).items()
    ]
    # F5-TTS transcribes a voice sample that comes without its text with this model (HF cache).
    fetched.append(snapshot_download("openai/whisper-large-v3-turbo", token=token))
    models_volume.commit()
    return fetched
