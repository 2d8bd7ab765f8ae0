"""Unexpected exceptions (bugs) caught by the runtime's loops: logged with their type and place,
never their message, and turned into the InternalError users see."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from controller.core.errors import DetectorError
from controller.core.logfields import about
from controller.core.model import WatcherRef
from controller.core.reasons import Reason


def bug_location(exc: BaseException) -> str:
    """Where an unexpected exception came from (file:line, function, and the chain of our own
    frames), without its message: library messages can quote the data they choked on, which
    may be a secret, so bug reports carry the place and the type only."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/controller/" in f.filename] or frames[-1:]
    return (
        " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours[-4:]))
        or "unknown"
    )


def unexpected(
    exc: BaseException, where: str, log: logging.Logger, ref: WatcherRef | None = None
) -> DetectorError:
    """Report a bug (an exception we did not expect) and turn it into the error users see.

    The log line names the exception's type and code location but never its message (see
    bug_location), and the watcher as structured fields; the error's reason is InternalError.
    """
    fields = {} if ref is None else about(ref)
    log.error(
        "%s: internal error %s at %s", where, type(exc).__name__, bug_location(exc), extra=fields
    )
    return DetectorError(f"internal error: {type(exc).__name__}", reason=Reason.INTERNAL_ERROR)
