"""The embedded MongoDB-protocol server's cheaper value walks give what nx-27017's own give."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bson import ObjectId as BsonObjectId
from bson.int64 import Int64
from neosqlite.objectid import ObjectId as NeoObjectId

from devstack import nx_server


class Tagged(dict):  # a dict subclass: the original walks it into a plain dict
    pass


def _value(rng: random.Random, depth: int, neo: bool) -> Any:
    leaves = [lambda: rng.choice(["", "a", "id", "é\u2028"]), lambda: rng.randint(-3, 3), lambda: rng.random(),
              lambda: rng.choice([True, False]), lambda: None, lambda: datetime(2026, 1, 1, tzinfo=UTC),
              lambda: Int64(rng.randint(0, 2)), lambda: Decimal("1.10"), lambda: b"\x00\x01",
              lambda: NeoObjectId() if neo else BsonObjectId()]
    if depth <= 0 or rng.random() < 0.4:
        return rng.choice(leaves)()
    if rng.random() < 0.5:
        return [_value(rng, depth - 1, neo) for _ in range(rng.randint(0, 4))]
    doc = {rng.choice(["id", "x", "_id", "clips"]) + str(i % 2 if i else ""): _value(rng, depth - 1, neo)
           for i in range(rng.randint(0, 4))}
    if rng.random() < 0.3:
        doc["id"] = rng.choice([0, False, 0.0, 1, "0", Int64(0)])
    return Tagged(doc) if rng.random() < 0.1 else doc


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (an Int64 is not an int here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (BsonObjectId, NeoObjectId)):
        return a.binary == b.binary
    return bool(a == b)


def test_the_walks_give_what_the_originals_give_on_random_documents():
    rng = random.Random(7)
    for _ in range(2000):
        doc = {"_id": BsonObjectId(), "body": _value(rng, 5, neo=False)}
        assert _same(nx_server.bson_to_neo(doc), nx_server._original_in(doc))
        out = {"_id": NeoObjectId(), "body": _value(rng, 5, neo=True)}
        assert _same(nx_server.neo_to_bson(out), nx_server._original_out(out))
    for top in ([BsonObjectId(), 1], BsonObjectId(), "x", None, Tagged(a=[BsonObjectId()])):
        assert _same(nx_server.bson_to_neo(top), nx_server._original_in(top))


def test_the_comparison_tells_a_walk_that_differs():
    """The check above can fail: a walk that left ObjectIds as they were is caught."""
    doc = {"_id": BsonObjectId(), "clips": [{"media": BsonObjectId()}]}
    assert not _same({**doc}, nx_server._original_in(doc))
