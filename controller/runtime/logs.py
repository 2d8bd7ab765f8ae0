"""The logging policy every process applies: the root level, and the libraries kept quieter."""

from __future__ import annotations

import logging


def set_log_levels(level: str = "") -> None:
    """`level` (MLCD_LOG_LEVEL) for the root logger, if given (else the command line's stays),
    then the HTTP libraries and kopf's per-object lines quieter than it."""
    if level:
        logging.getLogger().setLevel(level.upper())
    # httpx logs every request URL at INFO, urllib3 (under Apprise's requests and the kubernetes
    # client) every request line at DEBUG: a webhook or notify URL from a Secret may carry a
    # token in its path, so they stay at WARNING even with MLCD_LOG_LEVEL=DEBUG.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kopf logs "Handler 'observe' succeeded." at INFO for every watch event, i.e. for every
    # status write: at 10,000 watchers most of the log and a good share of the CPU. Our own
    # lines say what happened; kopf's warnings and errors still show (all of it with DEBUG).
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
