"""Face embeddings (`face_embed`): loading the models from the models folder, the five-point
alignment checked on drawn points, and SFace's input and output on a tiny network of its shape.

No weights can be downloaded here. The tests build a MobileFaceNet-shaped network (strided and
depthwise convolutions, a global depthwise convolution, a linear layer to 128) with random weights,
export it to ONNX with SFace's input (N, 3, 112, 112) and output (N, 128), and put it where the
real file goes; RetinaFace's published layout with random weights goes beside it. Random weights
cannot tell people apart: what is checked here holds for any weights."""

from __future__ import annotations

import json
import math
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gpu_tasks.engines import face_embed, retinaface
from gpu_tasks.engines.retinaface import Face
from gpu_tasks.errors import PermanentGpuError


class TinySFace(nn.Module):
    """MobileFaceNet's layout at a tiny width: 112 -> 56 -> 28, a 28x28 global depthwise
    convolution, a linear layer to the 128-d feature."""

    def __init__(self, width: int = 8, features: int = face_embed.EMBEDDING_SIZE) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width),
            nn.Conv2d(width, width, 3, 2, 1, groups=width, bias=False), nn.BatchNorm2d(width), nn.PReLU(width),
            nn.Conv2d(width, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.Conv2d(2 * width, 2 * width, 28, groups=2 * width, bias=False), nn.BatchNorm2d(2 * width),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, features, bias=False), nn.BatchNorm1d(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x / 255.0))


def build_tiny_sface(root: Path, *, features: int = face_embed.EMBEDDING_SIZE, seed: int = 0) -> Path:
    """The tiny network as `root/sface/face_recognition_sface_2021dec.onnx`, SFace's input and output names."""
    torch.manual_seed(seed)
    network = TinySFace(features=features).eval()
    path = root / face_embed.FOLDER / face_embed.FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter (dynamo=False) needs only `onnx`; the newer one would also need onnxscript.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(network, (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False, input_names=["data"],
                          output_names=["fc1"], dynamic_axes={"data": {0: "N"}, "fc1": {0: "N"}})
    return path


def build_tiny_detector(root: Path) -> Path:
    """RetinaFace's published network with random weights, saved as the published file is (from DataParallel)."""
    torch.manual_seed(0)
    path = root / face_embed.DETECTOR_FOLDER / face_embed.DETECTOR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{key}": value for key, value in retinaface.RetinaFace().state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def face_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("face-models")
    build_tiny_sface(root)
    build_tiny_detector(root)
    return root


@pytest.fixture
def embedder(face_models: Path, monkeypatch: pytest.MonkeyPatch) -> face_embed.Embedder:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(face_models))
    return face_embed.load()


def face_crop(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (112, 112, 3), dtype=np.uint8)


def test_the_published_file_names_and_where_download_models_fetches_them() -> None:
    from gpu_tasks.engines import weight_repos
    from gpu_tasks.types import get_spec

    declared = get_spec("likeness-consent").weights
    assert declared is not None and (declared.folder, declared.marker) == (face_embed.FOLDER, face_embed.FILE)
    repos = weight_repos("likeness-consent")
    assert set(repos) == {face_embed.FOLDER, face_embed.DETECTOR_FOLDER}
    sface = repos[face_embed.FOLDER]
    assert sface.id.startswith("https://github.com/opencv/opencv_zoo/raw/") and sface.id.endswith(face_embed.FILE)
    assert face_embed.DEFAULT_THRESHOLD == 0.363


def test_the_models_load_and_the_network_is_sfaces_shape(embedder: face_embed.Embedder) -> None:
    assert embedder.input_name == "data"
    assert list(embedder.session.get_inputs()[0].shape)[1:] == [3, 112, 112]
    assert not embedder.detector.training


@pytest.mark.parametrize("missing", [face_embed.FOLDER, face_embed.DETECTOR_FOLDER])
def test_a_missing_model_is_model_unavailable_naming_the_command(
    face_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for folder in {face_embed.FOLDER, face_embed.DETECTOR_FOLDER} - {missing}:
        (tmp_path / folder).symlink_to(face_models / folder)
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path))
    with pytest.raises(PermanentGpuError) as refused:
        face_embed.load()
    assert refused.value.code == "model_unavailable"
    assert f"weights for {missing} not found" in refused.value.message
    assert "download_models likeness-consent" in refused.value.message


@pytest.mark.parametrize("content", ["garbage", "wrong-width"])
def test_a_file_that_is_not_an_sface_network_is_model_unavailable(
    face_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    (tmp_path / face_embed.DETECTOR_FOLDER).symlink_to(face_models / face_embed.DETECTOR_FOLDER)
    if content == "garbage":  # a partial download
        (tmp_path / face_embed.FOLDER).mkdir()
        (tmp_path / face_embed.FOLDER / face_embed.FILE).write_bytes(b"\x08\x07not a model" * 100)
    else:  # another network under the name: 64 features, not 128
        build_tiny_sface(tmp_path, features=64)
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path))
    with pytest.raises(PermanentGpuError) as refused:
        face_embed.load()
    assert refused.value.code == "model_unavailable"
    assert "SFace weights unusable" in refused.value.message


def similarity_transform(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    angle = math.radians(angle_deg)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_alignment_maps_the_five_landmarks_onto_the_template() -> None:
    """Five coloured dots at the template's points, moved by a known rotation, scale and shift into a
    frame, come back to the template's points in the aligned crop."""
    import cv2

    template = np.array(face_embed.ALIGNED_LANDMARKS)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    move = similarity_transform(25.0, 2.5, (180.0, 40.0))
    points = template @ move[:, :2].T + move[:, 2]
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    for (x, y), colour in zip(points, colours, strict=True):
        cv2.circle(frame, (round(x), round(y)), 6, colour, -1)

    crop = face_embed.align(frame, [tuple(p) for p in points])

    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for (x, y), colour in zip(template, colours, strict=True):
        assert tuple(crop[round(y), round(x)]) == colour, (x, y)


def umeyama(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform of `source` onto `target` (Umeyama, 1991), as OpenCV's
    FaceRecognizerSF computes it."""
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    u, sigma, vt = np.linalg.svd(centred_t.T @ centred_s / len(source))
    d = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sigma) @ d) / ((centred_s**2).sum() / len(source))
    return np.hstack([scale * rotation, (mean_t - scale * rotation @ mean_s)[:, None]])


def test_the_alignment_is_the_least_squares_fit_over_all_five_points() -> None:
    """Landmarks a detector gives are noisy: the transform fits all five as well as it can, as OpenCV's
    does, rather than two or three of them exactly."""
    template = np.array(face_embed.ALIGNED_LANDMARKS)
    rng = np.random.default_rng(0)
    for trial in range(50):  # (a fit of a subset, LMEDS's, is pixels away in about 1 in 10)
        move = similarity_transform(rng.uniform(-30, 30), rng.uniform(1, 3), (60.0, 90.0))
        noisy = template @ move[:, :2].T + move[:, 2] + rng.normal(0.0, 4.0, template.shape)
        matrix = face_embed.alignment([tuple(p) for p in noisy])
        assert np.allclose(matrix, umeyama(noisy, template), atol=1e-3), trial


def test_landmarks_in_one_point_cannot_be_aligned() -> None:
    with pytest.raises(PermanentGpuError) as refused:
        face_embed.align(np.zeros((64, 64, 3), dtype=np.uint8), [(10.0, 10.0)] * 5)
    assert refused.value.code == "invalid_media"


def test_embeddings_are_unit_vectors_and_the_same_face_twice_is_similarity_one(
    embedder: face_embed.Embedder,
) -> None:
    first, second = face_crop(1), face_crop(2)
    vectors = face_embed.embed_faces(embedder, [first, second, first.copy(), first[:, ::-1]])
    assert vectors.shape == (4, 128) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert face_embed.similarity(vectors[0], vectors[2]) == pytest.approx(1.0, abs=1e-6)
    assert face_embed.similarity(vectors[0], vectors[1]) < 0.999
    assert face_embed.similarity(vectors[0], vectors[3]) < 0.999, "a mirrored face is another input"
    # One at a time or together: the published graph takes one face per run, so the engine feeds it so.
    alone = face_embed.embed_faces(embedder, [second])
    assert np.allclose(alone[0], vectors[1], atol=1e-6)
    assert face_embed.embed_faces(embedder, []).shape == (0, 128)


def test_the_input_is_rgb_0_to_255_with_no_mean_as_opencv_feeds_sface(embedder: face_embed.Embedder) -> None:
    crop = face_crop(3)
    blob = crop.transpose(2, 0, 1)[None].astype(np.float32)
    (raw, *_rest) = embedder.session.run(None, {"data": blob})
    expected = raw[0] / np.linalg.norm(raw[0])
    assert np.allclose(face_embed.embed_faces(embedder, [crop])[0], expected, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((1, 128)), np.full((1, 128), np.nan)])
def test_a_vector_that_is_no_direction_is_invalid_result(bad: np.ndarray) -> None:
    with pytest.raises(PermanentGpuError) as refused:
        face_embed.normalise(bad.astype(np.float32))
    assert refused.value.code == "invalid_result"


def test_detection_keeps_usable_faces_largest_first(
    embedder: face_embed.Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []

    def detect(model: Any, frame: np.ndarray, **kwargs: Any) -> list[Face]:
        asked.append(kwargs)
        marks = ((0.0, 0.0),) * 5
        return [Face((0, 0, 40, 50), 0.99, marks), Face((100, 100, 300, 300), 0.95, marks),
                Face((0, 0, 200, 20), 0.99, marks)]  # the last is too thin to compare

    monkeypatch.setattr(retinaface, "detect", detect)
    faces = face_embed.detect(embedder, np.zeros((400, 400, 3), dtype=np.uint8))
    assert [f.box for f in faces] == [(100, 100, 300, 300), (0, 0, 40, 50)]
    assert asked == [{"threshold": face_embed.DETECT_THRESHOLD, "max_side": face_embed.DETECT_SIDE}]


def test_the_real_detector_runs_on_a_frame(embedder: face_embed.Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """RetinaFace's network with random weights finds "faces" once nothing is held back by score:
    the path from a frame to aligned crops to vectors runs on them."""
    monkeypatch.setattr(face_embed, "DETECT_THRESHOLD", 0.0)
    frame = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    faces = face_embed.detect(embedder, frame)
    assert faces and all(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= face_embed.MIN_FACE_SIDE for f in faces)
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    vectors = face_embed.embed_faces(embedder, [face_embed.align(frame, f.landmarks) for f in faces[:3]])
    assert vectors.shape == (min(3, len(faces)), 128)


# bench/face_threshold.py ---------------------------------------------------------------------------


def _bench() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "face_threshold.py"
    spec = importlib.util.spec_from_file_location("bench_face_threshold", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_threshold_bench_says_it_cannot_measure_without_weights_and_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path / "no-models"))
    results = tmp_path / "face_threshold.json"
    assert _bench().main(["--results", str(results)]) == 2
    out = capsys.readouterr().out
    assert "not measured here" in out and "download_models likeness-consent" in out and "--lfw" in out
    assert not results.exists()


def test_the_threshold_bench_rates_by_hand() -> None:
    bench = _bench()
    same, different = np.array([0.9, 0.8, 0.5, 0.3]), np.array([0.1, 0.2, 0.4, 0.6])
    at = bench.rates(same, different, 0.363)
    assert (at["far"]["count"], at["far"]["n"], at["frr"]["count"], at["frr"]["n"]) == (2, 4, 1, 4)
    assert bench.equal_error(same, different) == (0.25, 0.5)
    assert bench.best_accuracy(same, different) == (0.75, 0.8)  # a tie goes to the stricter threshold


def test_the_threshold_bench_reads_lfw_and_scores_its_pairs(
    face_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench's mechanics on the tiny models and a made-up LFW of noise pictures (any "face" the
    random detector finds will do): what it reads, counts and writes; the figures mean nothing here."""
    from PIL import Image

    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(face_models))
    monkeypatch.setattr(face_embed, "DETECT_THRESHOLD", 0.0)
    lfw = tmp_path / "lfw"
    for person in ("Ann_A", "Bob_B", "Cy_C"):
        (lfw / person).mkdir(parents=True)
        for number in (1, 2):
            pixels = np.random.default_rng(zlib.crc32(f"{person}{number}".encode())).integers(0, 256, (250, 250, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(lfw / person / f"{person}_{number:04d}.jpg")
    (lfw / "pairs.txt").write_text("1\t2\nAnn_A\t1\t2\nBob_B\t1\t2\nAnn_A\t1\tBob_B\t2\nCy_C\t1\tAnn_A\t2\n")
    results = tmp_path / "face_threshold.json"
    assert _bench().main(["--lfw", str(lfw), "--results", str(results)]) == 0
    written = json.loads(results.read_text())
    assert written["pairs"]["same"] + written["pairs"]["different"] + written["pairs"]["unscored_no_face"] == 4
    assert written["in_use"]["threshold"] == face_embed.DEFAULT_THRESHOLD
    assert [row["threshold"] for row in written["grid"]] == [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    assert 0.0 <= written["eer"] <= 1.0
