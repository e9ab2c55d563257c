"""GPU inference: the Modal app and the local CPU engines of every AI feature.

Never imports Django: the Django side reaches this package through one client module
(jobs/gpu_client.py), so the same code runs inside Modal's containers.

Map of the package:
- `types`: the GPU side of each job type's declaration: GPU class, time limit, containers, output
  kind, and the engine each backend runs (the jobs app declares the rest, jobs/specs.py).
- `errors`: `GpuError(code, message, retryable)`, `TransientGpuError`, `PermanentGpuError`.
- `contract`: the payload/result contract (input refs, output refs, `EngineContext`).
- `backends`: `GpuBackend` (`supports`, `spawn`, `poll`, `cancel`, `release`) and `make_backend`:
  `local` (detached runner per call, `local_runner`), `modal` (`modal_backend`), `noop`
  (benchmarks only), fault injection (`faults`), routing.
- `engines`: one module per engine, named in `types` (each type's `local_engine` and
  `modal_engine`): transcription (faster-whisper locally) and transcription_hf (Whisper +
  pyannote), tts (eSpeak NG) and tts_f5 (F5-TTS), lip_sync (MuseTalk), video_generation (Wan2.1),
  performance_cloning and gaze_redirection (LivePortrait, `engines/liveportrait`),
  audio_generation (Stable Audio Open), video_query (Qwen2.5-VL), image_generation (FLUX.1),
  render and compression (ffmpeg), voice_consent (Whisper tiny.en and `speaker`, Resemblyzer's
  GE2E speaker encoder run with numpy), likeness_consent (voice consent's phrase check and
  `face_embed`: RetinaFace, five-point alignment, SFace run with onnxruntime); beside them, what
  they share (media, ffmpeg, encode, faces, timeline, effects, captions, fonts, weights).
- `screening`: what a user asks a model for, screened before the job is priced: the content
  policy's taxonomy and `screen_fields`, an embedded text classifier (numpy, its model in
  `screening/data/`, made by scripts/train_screening.py) and the image screener (open_nsfw, ONNX).
- `modal_app`: the deployable Modal app (`modal deploy gpu_tasks/modal_app.py`);
  `modal_runtime`: what each of its functions runs.

Importing this package (or `gpu_tasks.backends`) loads no heavy library: torch, transformers,
faster_whisper, ctranslate2, numpy and modal are imported inside the functions that use them.
"""
