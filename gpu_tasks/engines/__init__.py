"""The inference engines, one module per feature; each exposes `run(payload, ctx) -> result`.

Engines are plain functions of a payload and an `EngineContext` (see `gpu_tasks.contract`), so
the same code runs in the local runner, inside a Modal container and in tests. Heavy libraries
(torch, transformers, faster_whisper, ctranslate2) are imported inside the functions that need
them: importing `gpu_tasks` stays cheap for the Celery worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines.weights import Release, Repo, repo_of
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import InputBound, MediaLimit
from gpu_tasks.types import get_spec

Engine = Callable[[Mapping[str, Any], EngineContext], dict[str, Any]]


def load_engine(job_type: str, where: str) -> Engine:
    """The engine that implements `job_type` on `where` ("local" or "modal")."""
    spec = get_spec(job_type)
    target = spec.local_engine if where == "local" else spec.modal_engine
    if target is None:
        raise PermanentGpuError(
            "feature_unavailable", f"{spec.job_type.value} is not implemented on the {where} backend yet"
        )
    module_name, _, attr = target.partition(":")
    engine: Engine = getattr(importlib.import_module(module_name), attr)
    return engine


def weight_repos(job_type: str) -> dict[str, Repo | Release]:
    """What `job_type`'s engines load from the models directory: {folder: hub repository}.

    Each model engine declares it (`REPOS`); an engine whose model ships in a package, or that
    runs none (ffmpeg), declares nothing.
    """
    spec = get_spec(job_type)
    repos: dict[str, Repo | Release] = {}
    for target in {spec.local_engine, spec.modal_engine} - {None}:
        module = importlib.import_module(str(target).partition(":")[0])
        repos.update({folder: repo_of(repo) for folder, repo in getattr(module, "REPOS", {}).items()})
    return repos


def engine_languages(job_type: str, where: str) -> frozenset[str]:
    """The spoken languages `job_type`'s engine on `where` ("local" or "modal") takes (codes of
    `gpu_tasks.languages`, with `auto` where it detects): its module's `languages()`. Empty for a
    type whose engine takes no language, or that has no engine there."""
    spec = get_spec(job_type)
    target = spec.local_engine if where == "local" else spec.modal_engine
    if target is None:
        return frozenset()
    languages = getattr(importlib.import_module(target.partition(":")[0]), "languages", None)
    return frozenset(languages()) if languages is not None else frozenset()


def input_bounds(job_type: str) -> dict[str, InputBound]:
    """The bounds `job_type`'s engines declare of the fields the API's input names (each engine
    module's `INPUT_BOUNDS`; see `gpu_tasks.input_bounds`). Where the local and the Modal engine
    both declare a field, they declare the same bound."""
    spec = get_spec(job_type)
    bounds: dict[str, InputBound] = {}
    for target in (spec.local_engine, spec.modal_engine):
        if target is None:
            continue
        declared = getattr(importlib.import_module(target.partition(":")[0]), "INPUT_BOUNDS", {})
        for name, bound in declared.items():
            if bounds.setdefault(name, bound) != bound:
                raise ValueError(f"{spec.job_type.value}'s engines declare two bounds for {name}")
    return bounds


def media_limits(job_type: str) -> dict[str, MediaLimit]:
    """The limits `job_type`'s engines declare on their media inputs, by payload field (each engine
    module's `MEDIA_LIMITS`; see `gpu_tasks.input_bounds`). Where the local and the Modal engine
    both declare a field, they declare the same limit."""
    spec = get_spec(job_type)
    limits: dict[str, MediaLimit] = {}
    for target in (spec.local_engine, spec.modal_engine):
        if target is None:
            continue
        declared = getattr(importlib.import_module(target.partition(":")[0]), "MEDIA_LIMITS", {})
        for name, limit in declared.items():
            if limits.setdefault(name, limit) != limit:
                raise ValueError(f"{spec.job_type.value}'s engines declare two limits for {name}")
    return limits
