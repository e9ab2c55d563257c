"""Captions in a render: burned into the picture (only where they are), or SRT and WebVTT beside the video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pysubs2
import pytest

from gpu_tasks.errors import PermanentGpuError
from projects.captions import Cue, write, write_ass
from tests.gpu_tasks.helpers import frame_at
from tests.gpu_tasks.test_render import clip, edl, run

WIDTH, HEIGHT = 320, 180
CUES = [Cue(500, 1500, ("Burned-in captions",)), Cue(2500, 3500, ("Second cue", "on two lines"))]


def render(tmp_path: Path, color_video: Path, name: str, **captions: Any) -> dict[str, Any]:
    payload = {
        "edl": edl({"type": "video", "clips": [clip("v", 0, 4000)]}, width=WIDTH, height=HEIGHT, fps=25),
        "media": {"v": {"kind": "video", "path": str(color_video)}},
        **captions,
    }
    return run(tmp_path / name, payload)


def test_burned_in_captions_change_the_caption_region_only_while_a_cue_shows(tmp_path, color_video):
    plain = Path(render(tmp_path, color_video, "plain")["outputs"]["video"]["path"])
    burned_result = render(tmp_path, color_video, "burned", captions="burn",
                           captions_ass=write_ass(CUES, width=WIDTH, height=HEIGHT))
    burned = Path(burned_result["outputs"]["video"]["path"])
    assert set(burned_result["outputs"]) == {"video"}

    for t in (1.0, 3.0):  # while a cue shows
        changed = np.abs(frame_at(burned, t) - frame_at(plain, t)).sum(axis=2) > 60
        rows = np.nonzero(changed.any(axis=1))[0]
        assert changed.sum() > 200, "the caption's text is drawn"
        assert rows.min() >= HEIGHT // 2, "at the bottom of the frame"
        assert not changed[: HEIGHT // 2].any(), "nothing else changes"
    for t in (0.2, 2.0, 3.8):  # between cues
        assert (np.abs(frame_at(burned, t) - frame_at(plain, t)).sum(axis=2) > 60).sum() == 0


def test_captions_at_the_top_are_drawn_at_the_top(tmp_path, color_video):
    from projects.captions import CaptionStyle

    plain = Path(render(tmp_path, color_video, "plain")["outputs"]["video"]["path"])
    ass = write_ass(CUES, width=WIDTH, height=HEIGHT, style=CaptionStyle(position="top", font_size=20))
    top = Path(render(tmp_path, color_video, "top", captions="burn", captions_ass=ass)["outputs"]["video"]["path"])
    changed = np.abs(frame_at(top, 1.0) - frame_at(plain, 1.0)).sum(axis=2) > 60
    assert changed.sum() > 100 and not changed[HEIGHT // 2 :].any()


def test_sidecar_captions_are_delivered_beside_the_video_and_parse(tmp_path, color_video):
    result = render(tmp_path, color_video, "sidecar", captions="sidecar",
                    captions_srt=write(CUES, "srt"), captions_vtt=write(CUES, "vtt"))
    outputs = result["outputs"]
    assert set(outputs) == {"video", "captions_srt", "captions_vtt"}
    assert outputs["captions_srt"]["content_type"] == "application/x-subrip"
    assert outputs["captions_vtt"]["content_type"] == "text/vtt"
    for name, fmt in (("captions_srt", "srt"), ("captions_vtt", "vtt")):
        subs = pysubs2.load(outputs[name]["path"], format_=fmt)
        assert [(e.start, e.end, e.plaintext) for e in subs] == [
            (500, 1500, "Burned-in captions"), (2500, 3500, "Second cue\non two lines"),
        ]


@pytest.mark.parametrize("captions", [
    {"captions": "subtitles"},
    {"captions": "burn"},
    {"captions": "burn", "captions_ass": "  "},
    {"captions": "sidecar", "captions_srt": "1\n00:00:00,000 --> 00:00:01,000\nx\n"},
])
def test_a_bad_captions_payload_is_refused(tmp_path, color_video, captions):
    with pytest.raises(PermanentGpuError) as err:
        render(tmp_path, color_video, "bad", **captions)
    assert err.value.code == "invalid_input"


def test_a_script_in_a_folder_with_filtergraph_characters_is_still_burned_in(tmp_path, color_video):
    plain = Path(render(tmp_path, color_video, "plain")["outputs"]["video"]["path"])
    odd = render(tmp_path, color_video, "it's a:b,c[d];e", captions="burn",
                 captions_ass=write_ass(CUES, width=WIDTH, height=HEIGHT))
    changed = np.abs(frame_at(Path(odd["outputs"]["video"]["path"]), 1.0) - frame_at(plain, 1.0)).sum(axis=2) > 60
    assert changed.sum() > 200
