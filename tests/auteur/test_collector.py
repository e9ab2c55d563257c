"""auteur.core.collector: the cyclic collector is paused inside the block and never left off after it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from auteur.core.collector import collector_paused


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


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.parametrize("hook", ["gunicorn pre_fork", "celery pool process", "helper"])
def test_a_serving_process_freezes_what_it_loaded_and_still_collects_what_it_makes_later(hook, unfrozen_after):
    import weakref

    from auteur import celery as celery_module
    from auteur import gunicorn_conf
    from auteur.core.collector import startup_objects_frozen

    gc.unfreeze()
    loaded = _Cycle()
    run = {
        "gunicorn pre_fork": lambda: gunicorn_conf.pre_fork(None, None),
        "celery pool process": lambda: celery_module.freeze_startup_objects(),
        "helper": startup_objects_frozen,
    }[hook]
    run()
    assert gc.get_freeze_count() > 1000  # the test process's modules, classes and functions
    assert not any(obj is loaded for obj in gc.get_objects())  # out of the collector's sight

    later = _Cycle()
    ref = weakref.ref(later)
    del later
    gc.collect()
    assert ref() is None  # a cycle made after the freeze is still collected
