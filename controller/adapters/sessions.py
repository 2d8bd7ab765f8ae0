"""Each watcher's FOGIS session between runs, dropped once it has been idle for long.

ASP.NET forms authentication, which FOGIS's session cookie comes from, ends a session after 30
minutes without a request (its default timeout, sliding). Cookies idle for longer would only earn
a 401 and then a login anyway, so keeping them buys nothing: an hourly watcher's run logs in
either way, and without this 10,000 hourly watchers would hold 10,000 dead sessions. Dropping
them also spares FOGIS the doomed request. Should FOGIS keep sessions longer than IDLE_LIMIT,
this costs one login per run of watchers that run less often than that, no more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from controller.adapters.fogis import FogisSession

IDLE_LIMIT = 30 * 60.0  # seconds; see above

# The watcher's uid: a watcher re-created under the same name is another referee's, maybe, and
# the old one's cleanup must not take the new one's session.
Key = str


class Sessions:
    def __init__(
        self, *, idle_limit: float = IDLE_LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._idle_limit = idle_limit
        self._clock = clock
        self._sessions: dict[Key, tuple[float, FogisSession]] = {}
        self._swept = clock()

    def get(self, key: Key, base_url: str) -> FogisSession:
        """The watcher's session for `base_url`; a new one when the baseUrl changed or the old
        one was idle too long. Using it counts as activity."""
        now = self._clock()
        if now - self._swept >= self._idle_limit:  # at most once per limit: O(watchers)
            self._sessions = {
                k: entry for k, entry in self._sessions.items() if now - entry[0] < self._idle_limit
            }
            self._swept = now
        entry = self._sessions.get(key)
        if entry is None or entry[1].base_url != base_url or now - entry[0] >= self._idle_limit:
            session = FogisSession(base_url)
        else:
            session = entry[1]
        self._sessions[key] = (now, session)
        return session

    def forget(self, key: Key) -> None:
        self._sessions.pop(key, None)
