"""The hub's blocking read of the event streams: an idle one (no event for a whole block) is an
empty answer, not a time-out. redis-py's default socket timeout equals the block: every idle read
was cut short as if Redis were gone, logged so, and followed by a backoff that held events back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from realtime.hub import READ_BLOCK_MS, Hub


@pytest.mark.slow
def test_an_idle_blocking_read_answers_nothing_and_is_no_outage(caplog):
    async def read() -> object:
        hub = Hub()
        try:
            return await hub.redis.xread({"auteur:test:idle-stream": "0-0"}, count=10, block=READ_BLOCK_MS)
        finally:
            await hub.redis.aclose()

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(read()) in ([], None, {})
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
