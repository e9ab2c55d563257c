"""auteur.collector: the cyclic collector is paused inside the block and never left off after it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from auteur.collector import collector_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_paused_inside_and_runs_again_after():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_runs_again_after_an_exception():
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError
    assert gc.isenabled()


def test_a_nested_block_leaves_it_to_the_outer_one():
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_someone_switched_off_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
