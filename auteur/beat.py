"""Beat's scheduler: RedBeat (the schedule in Redis, sent only by the holder of a Redis lock),
made to ride out a Redis outage instead of exiting.

RedBeat renews its lock at the start of every tick, and an error there would end the beat
process, and with it `make run`. While Redis is unreachable nothing can be sent anyway, so a tick
only logs and waits. When Redis is back and the lock expired meanwhile, this beat takes it again
if it is free; if another replica took it, this one exits, to be restarted as a standby.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redis.exceptions import LockNotOwnedError

logger = logging.getLogger(__name__)

OUTAGE_RETRY_SECONDS = 5.0


class Scheduler(RedBeatScheduler):
    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except LockNotOwnedError:
            if self.lock is not None and self.lock.acquire(blocking=False):
                logger.warning("beat: the lock had expired; this beat holds it again")
                return 0.0
            raise  # another replica leads now
        except (redis.ConnectionError, redis.TimeoutError):
            logger.warning("beat: Redis unreachable; nothing is sent until it is back")
            return min(float(self.max_interval), OUTAGE_RETRY_SECONDS)
