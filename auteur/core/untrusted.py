"""Reading what a user sent, with bounded work: the one way a parser of user input is called.

The rule: nesting depth, reference expansion and element counts are bounded before a library
builds objects from a user's document, and a third-party parser that could still run away (a C or
C++ extension, a recursive reader, a library that expands references) runs in a child process
under CPU, memory and wall-clock limits, never in the process that serves requests.

`parse_confined` is that child for any parser: the parser is a function of a module without Django
(it is imported by the confined server, gpu_tasks/confined_server.py) that checks its document's
shape first (gpu_tasks/bounded.py) and refuses what it cannot read by raising
`gpu_tasks.confined.Refused` with an API error code. Here a refusal becomes that ApplicationError,
a child that spent its budget (AUTEUR_PARSE_*) a 422 `input_too_complex` naming what ran out, and
a machine that cannot start the child a 503: never the API worker's memory, CPU or life.
docs/security.md lists every parser of user input with its bounds.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

import gpu_tasks.confined as confined
from auteur.core.errors import ApplicationError

logger = logging.getLogger(__name__)

_CAUSES = {
    confined.CAUSE_MEMORY: "more memory",
    confined.CAUSE_CPU: "more CPU time",
    confined.CAUSE_TIME: "more time",
    confined.CAUSE_NESTING: "deeper nesting",
}


# A document is read at a lower priority than the API's requests: on a busy machine another user's
# request takes the CPU first (bench/interchange_import.py measures a bystander beside imports).
PARSE_NICE = 10


class InputTooComplex(ApplicationError):
    """A document that would take more to read than a request may use (details: `cause`)."""

    code = "input_too_complex"


def parse_limits() -> confined.Limits:
    """Read at call time, so that a changed setting (or a test's override) applies at once."""
    return confined.Limits(
        memory_bytes=settings.AUTEUR_PARSE_MEMORY_MB * 1024**2, cpu_seconds=settings.AUTEUR_PARSE_CPU_SECONDS,
        timeout_seconds=settings.AUTEUR_PARSE_TIMEOUT_SECONDS, nice=PARSE_NICE, sandbox=settings.AUTEUR_SANDBOX,
        sandbox_uid_base=settings.AUTEUR_SANDBOX_UID_BASE, sandbox_uid_count=settings.AUTEUR_SANDBOX_UID_COUNT,
    )


def parse_confined(function: str, *, what: str, data: bytes, **args: Any) -> Any:
    """`function` ("module:name") run on `data` (with `args`) in a confined child; its JSON result.

    `what` names the document for a client ("The timeline file"). Raises the ApplicationError of
    the code the function refused with, `InputTooComplex` for a child that ran out of memory, CPU
    or time (or crashed: a parser's crash is its input's doing), and a 503 when no child can run."""
    limits = parse_limits()
    try:
        return confined.call(function, limits=limits, data=data, **args)
    except confined.Refused as refusal:
        raise ApplicationError(refusal.message, code=refusal.code, details=refusal.details) from None
    except confined.BudgetSpent as spent:
        needs = _CAUSES.get(spent.cause)
        message = (f"{what} needs {needs} to read than a request may take." if needs else
                   f"{what} could not be read: its reader failed on it.")
        raise InputTooComplex(message, details={
            "cause": spent.cause, "memory_mb": settings.AUTEUR_PARSE_MEMORY_MB,
            "cpu_seconds": settings.AUTEUR_PARSE_CPU_SECONDS, "timeout_seconds": settings.AUTEUR_PARSE_TIMEOUT_SECONDS,
        }) from None
    except confined.ServerUnavailable as exc:
        logger.error("untrusted: no confined server for %s: %s", function, exc)
        raise ApplicationError(f"{what} cannot be read on this server now.", code="feature_unavailable",
                               details={"type": "parser"}) from None
