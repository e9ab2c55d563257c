"""Bytes a piece of a long file reads, against the file's size: a compression in pieces on the
local backend, its engine running as a uid of its own (the sandbox as root has it).

    .venv/bin/python bench/piece_reads.py [--minutes 5] [--pieces 5] [--mbps 4]

Each piece is one call with its `span`, as jobs.life.pieces spawns them, run twice in the same
run: as compression (the runner holds the source open and the engine reads it through the
descriptor, sought to its span: gpu_tasks.input_policy) and, as the baseline, the same engine
under another type's name, whose source the runner copies whole into the engine's box first (as
every piece did before). Per piece it counts what the runner staged into the box (the copy's
bytes) and what the ffmpeg that encodes the piece read (its read_chars, sampled every 5 ms until
it exits).

Then the same pieces as a Modal call reads them: the source behind a signed URL (a loopback server
that answers `Range: bytes=a-b` as S3 and R2 do, and counts the bytes it sends), each piece's
compression (its video) and transcription (its audio) fetching their span by range
(gpu_tasks.ranged); the baseline is the same server answering without ranges, where the call
downloads the file whole (as every piece did before). Writes bench/results/piece_reads.json.
"""

from __future__ import annotations

import argparse
import http.server
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import compression
from gpu_tasks.engines.ffmpeg import ffmpeg_exe
from gpu_tasks.local_runner import BOX


def clip(path: Path, minutes: int, mbps: float) -> Path:
    seconds = minutes * 60
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size=640x360:rate=25:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
                    "-b:v", f"{mbps}M", "-maxrate", f"{mbps}M", "-bufsize", f"{mbps}M",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def one_piece(backend: LocalBackend, job_type: str, source: Path, span: tuple[int, int]) -> dict[str, Any]:
    call_id = backend.spawn(job_type, {"media": {"path": str(source)}, "preset": "480p", "encoder_preset": "ultrafast",
                                       "span": {"start_ms": span[0], "end_ms": span[1]}})
    call_dir = backend.base_dir / call_id
    staged, ffmpeg_read = 0, {}
    while not (status := backend.poll(call_id)).done:
        inputs = call_dir / BOX / "inputs"
        if inputs.is_dir():
            staged = max(staged, sum(p.stat().st_size for p in inputs.iterdir() if p.is_file()))
        try:
            runner = psutil.Process(int(json.loads((call_dir / "pid.json").read_text())["pid"]))
            for child in runner.children(recursive=True):
                if "ffmpeg" in child.name():
                    ffmpeg_read[child.pid] = child.io_counters().read_chars
        except (FileNotFoundError, ValueError, psutil.Error):
            pass
        time.sleep(0.005)
    assert status.state == "succeeded", status.error
    backend.release(call_id)
    return {"staged_bytes": staged, "ffmpeg_read_bytes": sum(ffmpeg_read.values())}


class _Storage(http.server.BaseHTTPRequestHandler):
    """`body` at any path, by `Range: bytes=a-b` unless `ranges` is off; `sent` counts the bytes."""

    body = b""
    ranges = True
    sent = 0

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match is None or not self.ranges:
            status, chunk, extra = 200, self.body, {}
        else:
            first = int(match.group(1))
            last = min(int(match.group(2) or len(self.body) - 1), len(self.body) - 1)
            status, chunk = 206, self.body[first : last + 1]
            extra = {"Content-Range": f"bytes {first}-{last}/{len(self.body)}"}
        self.send_response(status)
        for name, value in {**extra, "Content-Length": str(len(chunk))}.items():
            self.send_header(name, value)
        self.end_headers()
        for at in range(0, len(chunk), 1 << 16):  # what a client that hung up did not take is not counted
            try:
                self.wfile.write(chunk[at : at + (1 << 16)])
            except OSError:
                return
            type(self).sent += min(1 << 16, len(chunk) - at)

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def storage(source: Path) -> Iterator[str]:
    _Storage.body = source.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Storage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/media/long.mp4"
    finally:
        server.shutdown()
        server.server_close()


def url_piece(url: str, span: tuple[int, int], workdir: Path, *, ranges: bool) -> dict[str, int]:
    """Bytes the server sent for one piece's compression and one piece's transcription audio."""
    _Storage.ranges = ranges
    sent = {}
    for kind, streams in (("video", ("video",)), ("audio", ("audio",))):
        _Storage.sent = 0
        ctx = EngineContext(workdir=workdir / f"{kind}-{span[0]}-{int(ranges)}", allow_paths=False,
                            payload={"output_dir": str(workdir / "out")})
        if kind == "video":
            compression.run({"media": {"url": url}, "preset": "480p", "encoder_preset": "ultrafast",
                             "span": {"start_ms": span[0], "end_ms": span[1]}}, ctx)
        else:  # what a transcription piece reads before its model runs
            ctx.input_path({"url": url}, "media", span=span, streams=streams)
        time.sleep(0.05)  # the server thread's last writes
        sent[kind] = _Storage.sent
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--pieces", type=int, default=5)
    parser.add_argument("--mbps", type=float, default=4.0, help="the video's bit rate: a camera's is 10 to 50")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auteur-piece-reads-") as tmp:
        source = clip(Path(tmp) / "long.mp4", args.minutes, args.mbps)
        size = source.stat().st_size
        # The same engine under another type's name: its source is copied whole, as before.
        backend = LocalBackend(Path(tmp) / "calls", engines={"render": "gpu_tasks.engines.compression:run"})
        if not backend.sandbox.separate_uid:
            raise SystemExit("the engines run as this process's uid here (run as root): the runner copies nothing")
        length = args.minutes * 60_000 // args.pieces
        spans = [(i * length, (i + 1) * length) for i in range(args.pieces)]
        rows = []
        for span in spans:
            by_descriptor = one_piece(backend, "compression", source, span)
            copied = one_piece(backend, "render", source, span)
            rows.append({"span_ms": list(span), "descriptor": by_descriptor, "copy": copied})
        url_rows = []
        with storage(source) as url:
            for span in spans:
                url_rows.append({"span_ms": list(span), "ranged": url_piece(url, span, Path(tmp), ranges=True),
                                 "whole": url_piece(url, span, Path(tmp), ranges=False)})
    def total(row: dict[str, Any]) -> int:
        return int(row["staged_bytes"] + row["ffmpeg_read_bytes"])

    share = 1 / args.pieces
    result = {
        "file_bytes": size, "minutes": args.minutes, "pieces": args.pieces, "piece_share": share,
        "rows": rows,
        "descriptor_read_share_max": max(total(r["descriptor"]) for r in rows) / size,
        "copy_read_share_min": min(total(r["copy"]) for r in rows) / size,
        "url_rows": url_rows,
        "url_ranged_share_max": max(max(r["ranged"].values()) for r in url_rows) / size,
        "url_whole_share_min": min(min(r["whole"].values()) for r in url_rows) / size,
    }
    print(f"{args.minutes} min 360p file, {size / 2**20:.1f} MiB, {args.pieces} pieces ({share:.0%} of it each):")
    print("| piece | by descriptor: staged + ffmpeg read | copied whole first (before): staged + ffmpeg read |")
    print("| --- | --- | --- |")
    for row in rows:
        d, c = row["descriptor"], row["copy"]
        print(f"| {row['span_ms'][0] / 1000:.0f}-{row['span_ms'][1] / 1000:.0f} s | {d['staged_bytes'] / 2**20:.1f} + "
              f"{d['ffmpeg_read_bytes'] / 2**20:.1f} MiB ({total(d) / size:.0%} of the file) | "
              f"{c['staged_bytes'] / 2**20:.1f} + {c['ffmpeg_read_bytes'] / 2**20:.1f} MiB ({total(c) / size:.0%}) |")
    print("\nThe same pieces through a signed URL (a Modal call), bytes the server sent:")
    print("| piece | by range: compression / transcription | without ranges (before): compression / transcription |")
    print("| --- | --- | --- |")
    for row in url_rows:
        r, w = row["ranged"], row["whole"]
        print(f"| {row['span_ms'][0] / 1000:.0f}-{row['span_ms'][1] / 1000:.0f} s | {r['video'] / 2**20:.1f} MiB "
              f"({r['video'] / size:.0%}) / {r['audio'] / 2**20:.1f} MiB ({r['audio'] / size:.0%}) | "
              f"{w['video'] / 2**20:.1f} MiB ({w['video'] / size:.0%}) / {w['audio'] / 2**20:.1f} MiB "
              f"({w['audio'] / size:.0%}) |")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "piece_reads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
