"""Peak memory of each local engine process: what AUTEUR_LOCAL_RUNNER_MEMORY_MB must leave room for.

    .venv/bin/python bench/runner_memory.py

Runs transcription (Whisper tiny.en for English; Whisper base for Spanish detected with
`auto`), TTS, a 720p compression and a 1080p render through the
local backend with no memory limit, sampling every 20 ms the runner's children (the engine
process and its ffmpeg): the peak of their data segments (what RLIMIT_DATA counts) and of their
address space (what RLIMIT_AS would count). Then `import torch, transformers` and one layer
under RLIMIT_DATA and RLIMIT_AS of 1 GiB. Writes bench/results/runner_memory.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.engines.ffmpeg import ffmpeg_exe
from gpu_tasks.engines.tts import synthesize, write_wav

TORCH_PROBE = """
import resource, sys
limit = 2**30
resource.setrlimit(getattr(resource, sys.argv[1]), (limit, limit))
import torch, transformers
torch.nn.Linear(512, 512)(torch.randn(64, 512))
"""


def payloads(tmp: Path) -> dict[str, dict[str, Any]]:
    wav, spanish, clip = tmp / "speech.wav", tmp / "es.wav", tmp / "clip.mp4"
    write_wav(wav, *synthesize("The quick brown fox jumps over the lazy dog near the river bank.", speed=0.9))
    write_wav(spanish, *synthesize("Buenos días, hoy vamos a hablar de la historia de la ciudad.", speed=0.9,
                                   voice="es"))
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=1280x720:rate=30:duration=10", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    video = {"kind": "video", "path": str(clip)}
    return {
        "transcription": {"media": {"path": str(wav)}},
        "transcription auto (base)": {"media": {"path": str(spanish)}, "language": "auto"},
        "tts": {"text": "Hello there, this is a test of the speech engine."},
        "compression 720p": {"media": video, "preset": "720p"},
        "render 1080p 10 s": {
            "edl": {"settings": {"resolution": {"width": 1920, "height": 1080}, "frame_rate": 30},
                    "tracks": [{"type": "video", "clips": [{"media_file_id": "m", "start_ms": 0,
                                                             "duration_ms": 10000}]}]},
            "media": {"m": video},
        },
    }


def peak_of(backend: LocalBackend, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    call_id = backend.spawn(job_type, payload)
    runner = json.loads((backend.base_dir / call_id / "pid.json").read_text())["pid"]
    data = vms = 0
    while not (status := backend.poll(call_id)).done:
        try:
            children = psutil.Process(runner).children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            try:
                info = child.memory_info()
            except psutil.Error:
                continue
            data, vms = max(data, info.data), max(vms, info.vms)
        time.sleep(0.02)
    return {"state": status.state, "data_mib": data >> 20, "address_space_mib": vms >> 20}


def main() -> None:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(Path(tmp) / "calls")
        for name, payload in payloads(Path(tmp)).items():
            results[name] = peak_of(backend, name.split()[0], payload)
            print(f"{name:20} {results[name]}")
    for limit in ("RLIMIT_DATA", "RLIMIT_AS"):
        ok = subprocess.run([sys.executable, "-c", TORCH_PROBE, limit], capture_output=True).returncode == 0
        results[f"torch + transformers under {limit} 1 GiB"] = ok
        print(f"torch + transformers under {limit} 1 GiB: {'ok' if ok else 'FAILED'}")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "runner_memory.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
