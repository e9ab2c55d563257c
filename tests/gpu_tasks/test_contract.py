from __future__ import annotations

from pathlib import Path

import pytest

from gpu_tasks.contract import EngineContext, input_ref_kind, save_output
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.results import FORMS, OutputPolicy


@pytest.mark.parametrize("ref", [None, {}, {"path": ""}, {"url": "ftp://x/y"}, {"url": "/relative"}, "a string"])
def test_malformed_input_refs_are_invalid_input(ref: object) -> None:
    with pytest.raises(PermanentGpuError) as info:
        input_ref_kind(ref)
    assert info.value.code == "invalid_input"


def test_deliver_moves_to_output_dir_or_returns_bytes(tmp_path: Path) -> None:
    local = EngineContext(workdir=tmp_path / "w1", payload={"output_dir": str(tmp_path / "out")})
    scratch = local.output_path("video", ".mp4")
    scratch.write_bytes(b"abc")
    ref = local.deliver("video", scratch, "video/mp4")
    assert Path(ref["path"]).parent == tmp_path / "out" and not scratch.exists()
    assert (ref["size_bytes"], ref["content_type"]) == (3, "video/mp4")
    assert local.outputs == {"video": ref}

    inline = EngineContext(workdir=tmp_path / "w2", payload={})
    scratch = inline.output_path("audio", ".wav")
    scratch.write_bytes(b"RIFF")
    ref2 = inline.deliver("audio", scratch, "audio/wav")
    assert ref2["data"] == b"RIFF" and "path" not in ref2

    every_form = OutputPolicy(frozenset(FORMS), root=tmp_path / "out")
    assert save_output(ref, tmp_path / "stored" / "a.mp4", policy=every_form) == tmp_path / "stored" / "a.mp4"
    assert (tmp_path / "stored" / "a.mp4").read_bytes() == b"abc"
    save_output(ref2, tmp_path / "stored" / "b.wav", policy=every_form)
    assert (tmp_path / "stored" / "b.wav").read_bytes() == b"RIFF"
    with pytest.raises(PermanentGpuError, match="kept from the object it names"):
        save_output({"uploaded": True, "size_bytes": 3}, tmp_path / "never", policy=every_form)
    assert not (tmp_path / "never").exists()
