"""Each model engine's job end to end on tiny weights: API -> Celery worker -> local backend
(its runner loads the tiny model from AUTEUR_MODELS_DIR) -> output media -> completed, charged
once; and a model whose weights are broken fails the job, refunded once.

The tiny models are built once and one worker runs every engine's job: each job's runner is a
process of its own that loads only its type's folder, so what one job checks does not depend
on which other jobs the worker ran before."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from credits.models import CreditTransaction
from credits.services.ledger import credit_grant
from credits.services.subscriptions import subscription_create
from gpu_tasks.engines import encode, weights
from jobs import gpu_client
from jobs.models import Job, JobStatus
from jobs.specs import JOB_SPECS, JobType
from media.models import MediaFile
from tests.factories import ProjectFactory, likeness_consent_for
from tests.gpu_tasks import (
    test_audio_generation,
    test_image_generation,
    test_lip_sync,
    test_performance_cloning,
    test_video_generation,
    test_video_query,
)
from tests.gpu_tasks.helpers import declared_folder
from tests.jobs.conftest import Worker, subprocess_env, upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BUILDERS: dict[str, Callable[[Path], None]] = {
    "image-generation": test_image_generation.build_tiny_model,
    "audio-generation": test_audio_generation.build_tiny_model,
    "video-query": test_video_query.build_tiny_model,
    # The VAE with 2 base channels, not 3: the same classes and sizes, the decode at 832x480 cheaper.
    "video-generation": functools.partial(test_video_generation.build_tiny_model, vae_dim=2),
    "lip-sync": test_lip_sync.build_tiny_model,
    "performance-cloning": test_performance_cloning.build_tiny_model,
    "gaze-redirection": test_performance_cloning.build_tiny_model,  # the same LivePortrait networks
}


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A portrait and a 1 s talking-face clip (8 fps, with a tone) that the face detector finds."""
    from PIL import Image

    draw = test_performance_cloning.draw_face
    folder = tmp_path_factory.mktemp("faces")
    Image.fromarray(draw(256, 256)).save(folder / "portrait.png")
    frames = np.stack([draw(256, 256, dx=i % 4, mouth=4 + i) for i in range(8)])
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    encode.write_mp4(frames, 8, folder / "face.mp4", audio=tone, sample_rate=16000)
    return {"portrait": folder / "portrait.png", "video": folder / "face.mp4"}


@pytest.fixture
def project(user):
    credit_grant(user=user, amount=500, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="p")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every engine's tiny model, each in its own folder of one models directory."""
    root = tmp_path_factory.mktemp("models")
    for build in dict.fromkeys(BUILDERS.values()):  # LivePortrait's networks serve two types
        build(root)
    # Readable by the engines' sandbox uids, as `manage.py download_models` leaves the models.
    weights.readable_by_all(root)
    return root


@pytest.fixture(scope="module")
def model_worker(django_db_setup: None, tiny_models: Path) -> Iterator[Worker]:
    """One worker reading the tiny models, for every model job of this module."""
    worker = Worker(subprocess_env(AUTEUR_MODELS_DIR=str(tiny_models)))
    yield worker
    worker.stop()


@pytest.fixture
def api_models(tiny_models: Path, settings: Any) -> Iterator[Path]:
    """The API reads the worker's models directory (to tell what it can run)."""
    settings.AUTEUR_MODELS_DIR = str(tiny_models)
    gpu_client.reset()
    yield tiny_models
    gpu_client.reset()


def ledger(job_id: Any) -> list[str]:
    return sorted(CreditTransaction.objects.filter(job_id=job_id).values_list("type", flat=True))


def body_for(job_type: str, project: Any, auth_client: Any, samples: Any, faces: dict[str, Path]) -> dict[str, Any]:
    base = {"project_id": str(project.pk)}

    def upload(path: Path, content_type: str) -> str:
        media = upload_local(auth_client, project, path, content_type)
        if media.type in ("image", "video"):
            likeness_consent_for(media)  # the face's person consented (the likeness tests verify one)
        return str(media.pk)

    if job_type == "lip-sync":
        return {**base, "video_media_id": upload(faces["video"], "video/mp4"),
                "audio_media_id": upload(samples.short_wav, "audio/wav")}
    if job_type == "performance-cloning":
        return {**base, "source_image_media_id": upload(faces["portrait"], "image/png"),
                "driving_video_media_id": upload(faces["video"], "video/mp4")}
    if job_type == "gaze-redirection":
        return {**base, "video_media_id": upload(faces["video"], "video/mp4"), "target": {"yaw": 10, "pitch": 0}}
    if job_type == "image-generation":
        return {**base, "prompt": "a red cat", "width": 256, "height": 256, "steps": 2, "seed": 1}
    if job_type == "audio-generation":
        return {**base, "prompt": "rain on a roof", "duration_sec": 1, "steps": 1, "guidance": 0, "seed": 1}
    if job_type == "video-generation":
        # The cheapest job the API takes (one step, guidance off): the decode at 832x480 is most of it.
        return {**base, "prompt": "a cat walks on the grass", "duration_sec": 1, "steps": 1, "guidance": 1, "seed": 1}
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    return {**base, "video_media_id": str(video.pk), "question": "What colour is the sky?"}


@pytest.mark.parametrize("job_type", sorted(BUILDERS))
def test_a_model_job_completes_on_tiny_weights(job_type, model_worker, api_models, auth_client, project, samples,
                                              faces):
    plan = JOB_SPECS[JobType(job_type)].plan
    if plan is not None:
        subscription_create(user=project.user, plan=plan)
    body = body_for(job_type, project, auth_client, samples, faces)
    response = auth_client.post(f"/api/v1/jobs/{job_type}", body, format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"], timeout=240)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert ledger(job.pk) == ["usage"], "charged once, never refunded"
    outputs = MediaFile.objects.filter(source_job_id=job.pk)
    if job_type == "video-query":
        assert isinstance(job.output_data["answer"], str) and job.output_data["timestamps_ms"]
        assert not outputs.exists()
    else:
        (output,) = outputs
        kind = {"image-generation": "image", "audio-generation": "audio"}.get(job_type, "video")
        assert output.status == "ready" and output.type == kind
        if "seed" in body:
            assert output.metadata["generation"]["seed"] == 1
            assert output.metadata["generation"]["steps"] == body["steps"]
        else:
            assert output.metadata["generation"]["model"] == JOB_SPECS[JobType(job_type)].engine.model


def test_a_model_whose_weights_are_broken_fails_and_is_refunded_once(model_worker, api_models, auth_client,
                                                                      project):
    folder = api_models / declared_folder("image-generation")
    working = folder.rename(folder.with_name(folder.name + ".working"))
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")  # present, so accepted; unloadable, so failed
    try:
        response = auth_client.post("/api/v1/jobs/image-generation", {"project_id": str(project.pk), "prompt": "x"},
                                    format="json")
        assert response.status_code == 202, response.json()
        job = wait_terminal(response.json()["job_id"], timeout=240)
    finally:
        shutil.rmtree(folder)
        working.rename(folder)
    assert job.status == JobStatus.FAILED and job.credits_refunded
    assert ledger(job.pk) == ["refund", "usage"]
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert Job.objects.filter(retry_of=job).count() == 0
