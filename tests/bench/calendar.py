"""`python -m tests.bench.calendar [--watchers N] [--minutes M] [--speed S]`: the calendar feeds'
server under its expected load (`make bench`).

In one process: the real CalendarServer (controller/runtime/calendar_server.py) on a loopback
port, fed N watchers with a feed as the watch would feed it, and an in-memory stand-in for its
Kubernetes reads (the token Secrets and the "notified" ConfigMaps, each read answered after
`--api-ms`) that counts every call. A client per watcher polls its feed every 5 minutes, as
calendar apps are asked to at most (the feed says hourly), sending If-None-Match from its last
answer; every simulated hour, `--changes` of the watchers get a new list (a run confirmed a
change: new state, new status.calendar.revision). Time is compressed `--speed` times, the
server's clock with it (so its 30 s token cache and rate limit see simulated time); the API's
latency is not (it is part of each request's). 10,000 watchers are 33 requests a second in real
time: `--watchers 10000 --speed 5` (167 a second) takes about 15 minutes for 60 simulated ones.

First every feed is fetched once, 64 at a time, as after a restart (nothing cached: a read of
the token and of the ConfigMap, and a render, per feed); then the clients poll. Printed: that
first round's time, then requests, latency p50/p99 (client side, loopback), the share of 304s,
API calls per request (Secret and ConfigMap reads apart), the body cache's size, and the
process's CPU (the clients' included).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import resource
import socket
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import aiohttp

from controller.adapters.kube import SecretData, StoredConfigMap
from controller.adapters.peoplestore import CALENDAR_KEY
from controller.core.calendar import CalendarState, advance
from controller.core.diff import Snapshot, normalise_all, window_for
from controller.core.model import WatcherRef
from controller.runtime import calendar_server
from controller.runtime.calendar_server import CalendarServer
from tests.fakes.fogis.records import make_match

POLL_SECONDS = 300.0  # a client per watcher, every 5 minutes


class Api:
    """The token Secrets and notified ConfigMaps of every watcher; every read counted."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.secrets: dict[tuple[str, str], SecretData] = {}
        self.config_maps: dict[tuple[str, str], StoredConfigMap] = {}
        self.calls: Counter[str] = Counter()

    async def find_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData | None:
        self.calls["get secret"] += 1
        await asyncio.sleep(self.delay)
        return self.secrets.get((namespace, name))

    async def create_owned_secret(
        self, ref: WatcherRef, name: str, values: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        self.calls["create secret"] += 1
        return False

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None:
        self.calls["get configmap"] += 1
        await asyncio.sleep(self.delay)
        return self.config_maps.get((namespace, name))


class World:
    """N watchers: their objects (as the watch has them), tokens and calendar states."""

    def __init__(self, watchers: int, matches: int, api: Api, server: CalendarServer) -> None:
        self.api, self.server = api, server
        self.refs = [WatcherRef("bench", f"w{i:05d}", f"uid-{i:05d}") for i in range(watchers)]
        self.tokens = {ref.uid: f"{i:043d}" for i, ref in enumerate(self.refs)}
        self.states: dict[str, CalendarState] = {}
        self.matches = matches
        for ref in self.refs:
            api.secrets[ref.namespace, f"{ref.name}-calendar"] = SecretData(
                {"token": self.tokens[ref.uid]}, "1", "s", (ref.uid,)
            )
            self.change(ref, 0)

    def change(self, ref: WatcherRef, step: int) -> None:
        """A run confirmed a new list for `ref`: one match moved."""
        now = datetime.now(UTC)
        day = now.date() + timedelta(days=3)
        records = [
            make_match(m, on=day, avsparkstid=f"{(12 + step + m) % 24:02d}:00")
            if m == step % self.matches
            else make_match(m, on=day)
            for m in range(self.matches)
        ]
        window = window_for(now.date(), 7, 365)
        state = advance(
            self.states.get(ref.uid), Snapshot(normalise_all(records)), records, window, now,
            include_contacts=False,
        )  # fmt: skip
        self.states[ref.uid] = state
        data = {CALENDAR_KEY: gzip.compress(state.to_json().encode(), mtime=0)}
        self.api.config_maps[ref.namespace, f"{ref.name}-matchlist-notified"] = StoredConfigMap(
            data, (ref.uid,)
        )
        self.server.observe(
            {
                "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
                "spec": {"calendar": {"enabled": True}},
                "status": {"calendar": {"revision": state.revision}},
            }
        )


async def first_fetch(
    session: aiohttp.ClientSession,
    base: str,
    path: str,
    gate: asyncio.Semaphore,
    latencies: list[float],
) -> str | None:
    """A client's first request, as after a restart of the operator: nothing is cached."""
    async with gate:
        started = time.perf_counter()
        async with session.get(base + path) as answer:
            await answer.read()
            latencies.append(time.perf_counter() - started)
            return answer.headers.get("ETag")


async def client(
    session: aiohttp.ClientSession,
    base: str,
    path: str,
    etag: str | None,
    period: float,
    until: float,
    latencies: dict[int, list[float]],
) -> None:
    # Clients start spread over the period (a benchmark's randomness, not a secret's).
    await asyncio.sleep(random.uniform(0, period))  # noqa: S311
    while time.monotonic() < until:
        headers = {} if etag is None else {"If-None-Match": etag}
        started = time.perf_counter()
        async with session.get(base + path, headers=headers) as answer:
            await answer.read()
            latencies.setdefault(answer.status, []).append(time.perf_counter() - started)
            if answer.status == 200:
                etag = answer.headers.get("ETag")
        await asyncio.sleep(period)


async def changes(world: World, fraction: float, hour: float, until: float) -> None:
    """`fraction` of the watchers get a new list per simulated hour, one at a time, evenly."""
    count = round(len(world.refs) * fraction)
    if count == 0:
        return
    step = 0
    while True:
        await asyncio.sleep(hour / count)
        if time.monotonic() >= until:
            return
        step += 1
        world.change(random.choice(world.refs), step)  # noqa: S311 - a benchmark's choice


async def bench(options: argparse.Namespace) -> None:
    random.seed(options.seed)
    calendar_server.TOKEN_TTL_SECONDS = options.token_ttl
    started_real = time.monotonic()
    api = Api(options.api_ms / 1000)  # real time: it is part of a request's latency
    server = CalendarServer(api, clock=lambda: (time.monotonic() - started_real) * options.speed)
    world = World(options.watchers, options.matches, api, server)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await server.start("127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    period = POLL_SECONDS / options.speed
    latencies: dict[int, list[float]] = {}
    paths = [f"/calendar/{r.namespace}/{r.name}/{world.tokens[r.uid]}.ics" for r in world.refs]
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Every feed's first request at once, 64 at a time: the round after a restart.
        gate, first = asyncio.Semaphore(64), list[float]()
        started = time.monotonic()
        etags = await asyncio.gather(
            *(first_fetch(session, base, path, gate, first) for path in paths)
        )
        first_round = time.monotonic() - started
        first_calls = sum(api.calls.values())
        api.calls.clear()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        until = time.monotonic() + options.minutes * 60 / options.speed
        tasks = [
            client(session, base, path, etag, period, until, latencies)
            for path, etag in zip(paths, etags, strict=True)
        ]
        tasks.append(changes(world, options.changes, 3600 / options.speed, until))
        await asyncio.gather(*tasks)
    used = resource.getrusage(resource.RUSAGE_SELF)
    await server.stop()
    codes = {code: len(times) for code, times in sorted(latencies.items())}
    requests = sum(codes.values())
    print(
        f"calendar feeds: {options.watchers} watchers x {options.matches} matches, a client each "
        f"polling every 5 min, {options.minutes:g} simulated minutes ({options.speed:g}x), "
        f"{options.changes:.0%} of the lists changing per hour, API reads answered in "
        f"{options.api_ms:g} ms, token cache {options.token_ttl:g} s"
    )
    print(
        f"  first round (a restart) {len(first)} requests in {first_round:.1f} s, 64 at a time: "
        f"p50 {_ms(first, 0.5)}, p99 {_ms(first, 0.99)}, {first_calls} API calls"
    )
    print(f"  then, requests          {requests} ({codes})")
    every = [t for times in latencies.values() for t in times]
    for label, times in (
        ("all", every),
        ("200", latencies.get(200, [])),
        ("304", latencies.get(304, [])),
    ):
        if times:
            print(f"  latency p50 / p99 {label:>5} {_ms(times, 0.5)} / {_ms(times, 0.99)}")
    print(f"  304 share               {codes.get(304, 0) / max(1, requests):.1%}")
    secret_reads, map_reads = api.calls["get secret"], api.calls["get configmap"]
    print(
        f"  API calls per request   {(secret_reads + map_reads) / max(1, requests):.3f} "
        f"(Secret reads {secret_reads / max(1, requests):.3f}, ConfigMap reads "
        f"{map_reads / max(1, requests):.3f})"
    )
    print(
        f"  body cache              {server.cache.size / 1024:.0f} KiB, {len(server.cache)} bodies"
    )
    cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    wall = options.minutes * 60 / options.speed
    print(f"  process CPU             {cpu_seconds:.1f} s in {wall:.0f} s (clients included)")


def _ms(times: list[float], quantile: float) -> str:
    ordered = sorted(times)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=300)
    parser.add_argument("--matches", type=int, default=15, help="matches per watcher's feed")
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes")
    parser.add_argument("--speed", type=float, default=60.0, help="time compression")
    parser.add_argument("--changes", type=float, default=0.1, help="lists changing per hour")
    parser.add_argument("--api-ms", type=float, default=3.0, help="an API read's latency")
    parser.add_argument(
        "--token-ttl", type=float, default=calendar_server.TOKEN_TTL_SECONDS,
        help="seconds a read token is trusted (the server's constant by default)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
