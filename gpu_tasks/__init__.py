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
- `engines`: transcription (faster-whisper locally, transformers Whisper + pyannote on Modal),
  tts (eSpeak NG locally, F5-TTS on Modal), render and compression (ffmpeg).
- `modal_app`: the deployable Modal app (`modal deploy gpu_tasks/modal_app.py`);
  `modal_runtime`: what each of its functions runs.

Importing this package (or `gpu_tasks.backends`) loads no heavy library: torch, transformers,
faster_whisper, ctranslate2, numpy and modal are imported inside the functions that use them.
"""
