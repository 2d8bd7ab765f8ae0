"""The logging policy every process applies: the root level, and the libraries kept quieter."""

from __future__ import annotations

import logging


def set_log_levels(level: str = "") -> None:
    """`level` (MLCD_LOG_LEVEL) for the root logger, if given (else the command line's stays),
    then httpx, httpcore and kopf's per-object lines quieter than it."""
    if level:
        logging.getLogger().setLevel(level.upper())
    # httpx logs every request URL at INFO; a webhook URL from a Secret may carry a token.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kopf logs "Handler 'observe' succeeded." at INFO for every watch event, i.e. for every
    # status write: at 10,000 watchers most of the log and a good share of the CPU. Our own
    # lines say what happened; kopf's warnings and errors still show (all of it with DEBUG).
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
