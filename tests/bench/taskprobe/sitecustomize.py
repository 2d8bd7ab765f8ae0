"""Loaded into the operator process by tests/bench/operator/ only, through PYTHONPATH.

On SIGUSR1 it writes the asyncio tasks of the running loop, counted by coroutine name, and the
state of the operator's two httpcore connection pools as JSON to the file named by
BENCH_TASKS_FILE (not an MLCD_* name: those are validated by the operator). The
handler runs on the main thread, which is the thread running kopf's event loop, so it sees that
loop; it costs nothing until the signal comes.

It also times the garbage collector's full (generation 2) collections through gc.callbacks and
reports those since the previous signal: a full collection stops the event loop, and with every
watcher's objects in the heap it is long.

It measures the event loop's own lag: a task sleeping 20 ms over and over notes how late each
wake-up came (whatever held the loop: a handler computing, a full collection, a blocking call).
The answer to SIGUSR1 holds those since the previous one (count, p50, p99, max); the sample
spanning the answer itself is dropped, since the dump (gc.get_objects) is the benchmark's cost.
The sleeper costs about 1 % of a core (50 wake-ups a second), as much as the idle target: a
file <BENCH_TASKS_FILE minus .json>.cmd holding "pause" or "resume", read at the next SIGUSR1,
pauses it (one wake-up a second) while the bench measures idle CPU.
The task starts when the main thread's loop first runs (kopf's asyncio.run), through a wrapper
of BaseEventLoop.run_forever: no hook in controller/ and none in a peer operator either.

It times every callback the loop runs (asyncio's Handle._run) and keeps the slowest since the
previous signal, above 50 ms, each with the time the garbage collector took inside it and, for
a task's step, the chain of coroutines it was suspended in when the step ended: what held the
loop, named (two clock reads a callback: cheap next to the callbacks themselves).

With BENCH_TRACEMALLOC=<frames>, SIGUSR2 starts tracing allocations (slow: a diagnostic run, not
a measurement; started late so the operator's imports stay fast and out of the figures), and the
JSON gets the biggest allocation sites of what is still alive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import os
import re
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

_FRAMES = int(os.environ.get("BENCH_TRACEMALLOC") or 0)
_LAG_PERIOD = 0.02
_lags: list[float] = []  # seconds late, per 20 ms sleep, since the previous dump
_lag = {"started": False, "skip": False, "paused": False}
_lag_tasks: list[asyncio.Task[None]] = []  # the loop holds tasks weakly
_gc_started: float | None = None
_full_collections: list[tuple[float, float, int]] = []  # (wall time, seconds, objects collected)
_gc_seconds = [0.0]  # all collections of any generation, ever
_gc_any_started: float | None = None
_SLOW_CALLBACK = 0.05
_slow: list[dict[str, object]] = []  # since the previous dump, the slowest kept
# Where our operator keeps its Operator (in kopf's memo, out of reach): its class, watched for
# the instance its startup handler builds (see _watch_operator).
_HANDLERS = "controller.entrypoints.handlers"
_operators: list[Any] = []


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    global _gc_started, _gc_any_started  # noqa: PLW0603 - the callback has no other place
    if phase == "start":
        _gc_any_started = time.perf_counter()
    elif _gc_any_started is not None:
        _gc_seconds[0] += time.perf_counter() - _gc_any_started
        _gc_any_started = None
    if info.get("generation") != 2:
        return
    if phase == "start":
        _gc_started = time.perf_counter()
    elif _gc_started is not None:
        took = time.perf_counter() - _gc_started
        _full_collections.append((time.time(), took, info.get("collected", 0)))
        _gc_started = None


async def _measure_lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        if _lag["paused"]:
            await asyncio.sleep(1.0)
            continue
        began = loop.time()
        await asyncio.sleep(_LAG_PERIOD)
        late = max(0.0, loop.time() - began - _LAG_PERIOD)
        if _lag["skip"]:
            _lag["skip"] = False
        else:
            _lags.append(late)


def _lag_summary() -> dict[str, object]:
    ordered = sorted(_lags)

    def rank(q: float) -> float | None:
        return round(1000 * ordered[int(q * (len(ordered) - 1))], 1) if ordered else None

    return {
        "samples": len(ordered),
        "p50Ms": rank(0.5),
        "p99Ms": rank(0.99),
        "maxMs": round(1000 * ordered[-1], 1) if ordered else None,
    }


def _where(handle: asyncio.Handle) -> str:
    """What a handle ran: a task's coroutine chain (as suspended now), else the callback."""
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(chain) < 12:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            name = getattr(coro, "__qualname__", type(coro).__name__)
            chain.append(f"{name}:{frame.f_lineno}" if frame is not None else name)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return "task " + " > ".join(chain)
    return repr(handle)[:300]


_original_handle_run = asyncio.Handle._run


def _timed_run(self: asyncio.Handle) -> None:
    began, gc_before = time.perf_counter(), _gc_seconds[0]
    _original_handle_run(self)
    took = time.perf_counter() - began
    if took > _SLOW_CALLBACK and len(_slow) < 1000:
        _slow.append(
            {
                "at": time.time(),
                "ms": round(1000 * took, 1),
                "gcMs": round(1000 * (_gc_seconds[0] - gc_before), 1),
                "where": _where(self),
            }
        )


_original_run_forever = asyncio.BaseEventLoop.run_forever


def _run_forever(self: asyncio.BaseEventLoop) -> None:
    if not _lag["started"] and threading.current_thread() is threading.main_thread():
        _lag["started"] = True
        _watch_operator()
        self.call_soon(lambda: _lag_tasks.append(self.create_task(_measure_lag())))
    _original_run_forever(self)


def _watch_operator() -> None:
    """Keeps the Operator our handlers module builds at startup. kopf imports that module (its
    --module) before its loop first runs, which is when this is called."""
    handlers = sys.modules.get(_HANDLERS)
    if handlers is None:
        return  # a peer operator, or ours misnamed: _pools() tells them apart
    original = handlers.Operator.__init__

    def remembered(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _operators.append(self)

    handlers.Operator.__init__ = remembered


def _allocations() -> dict[str, object]:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    by_file = snapshot.statistics("filename")[:25]
    by_trace = snapshot.statistics("traceback")[:20]
    return {
        "tracedMiB": round(tracemalloc.get_traced_memory()[0] / 2**20, 1),
        "byFile": [f"{s.size / 2**20:7.1f} MiB {s.count:8d} {s.traceback[0]}" for s in by_file],
        "byTraceback": [
            {"MiB": round(s.size / 2**20, 2), "count": s.count, "frames": s.traceback.format()}
            for s in by_trace
        ],
    }


def _state(info: str) -> str:
    """'http://host:port', HTTP/1.1, ACTIVE, Request Count: 3 -> HTTP/1.1 ACTIVE"""
    match = re.search(r"(HTTP/[\d.]+), (\w+)", info)
    return f"{match[1]} {match[2]}" if match else info


def _pool_state(pool: Any) -> dict[str, object]:
    states = collections.Counter(_state(connection.info()) for connection in pool._connections)
    return {
        "maxConnections": pool._max_connections,
        "connections": dict(states.most_common()),
        "requests": len(pool._requests),
        "queued": sum(r.is_queued() for r in pool._requests),
    }


def _pools() -> dict[str, dict[str, object]]:
    """The operator's httpcore pools (private attributes: a diagnostic, not an interface): its
    limit, its connections by state, the requests waiting or in flight. Empty in a peer operator;
    in ours, LookupError when its handlers module or Operator is not where this looks (renamed
    or moved), so the bench says so instead of reporting no pools."""
    if "controller" not in sys.modules:
        return {}  # a peer operator
    if _HANDLERS not in sys.modules:
        raise LookupError(f"{_HANDLERS} is not loaded: taskprobe's name for it is out of date")
    if not _operators:
        raise LookupError(f"no {_HANDLERS}.Operator was built (or taskprobe missed it)")
    runner = getattr(_operators[-1], "runner", None)
    pools: dict[str, Any] = {}
    with contextlib.suppress(AttributeError):
        pools["fogis"] = runner._fogis_transport._pool  # type: ignore[union-attr]
    with contextlib.suppress(AttributeError):
        pools["webhook"] = runner._webhook_client._transport._pool  # type: ignore[union-attr]
    return {name: _pool_state(pool) for name, pool in pools.items()}


def _dump(signum: int, frame: FrameType | None) -> None:
    target = os.environ.get("BENCH_TASKS_FILE")
    if not target:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        document: dict[str, object] = {"total": None, "byCoroutine": {}}
    else:
        tasks = asyncio.all_tasks(loop)
        names = collections.Counter(
            getattr(task.get_coro(), "__qualname__", type(task.get_coro()).__name__)
            for task in tasks
        )
        document = {"total": len(tasks), "byCoroutine": dict(names.most_common())}
    try:
        document["httpcorePools"] = _pools()
    except LookupError as exc:  # raised here, it would stop the operator's loop instead
        document["probeError"] = str(exc)
    document["fullCollections"] = [
        {"at": at, "seconds": round(took, 3), "collected": n} for at, took, n in _full_collections
    ]
    tracked = gc.get_objects()
    document["gcObjects"] = len(tracked)
    document["gcByType"] = dict(
        collections.Counter(type(o).__qualname__ for o in tracked).most_common(25)
    )
    document["gcGenerations"] = [len(gc.get_objects(g)) for g in range(3)]
    document["gcFrozen"] = gc.get_freeze_count()
    del tracked
    command = Path(target).with_suffix(".cmd")
    if command.exists():
        text = command.read_text().strip()
        command.unlink()
        if text == "thaw":
            document["thaw"] = _thaw()
        else:
            _lag["paused"] = text == "pause"
    document["loopLag"] = _lag_summary()
    document["slowCallbacks"] = sorted(_slow, key=lambda c: -float(c["ms"]))[:15]  # type: ignore[arg-type]
    _slow.clear()
    _lags.clear()
    _lag["skip"] = True  # the sleep under way now includes this dump
    _full_collections.clear()
    if tracemalloc.is_tracing():
        document["allocations"] = _allocations()
    path = Path(target)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document, indent=1))
    partial.replace(path)


def _thaw() -> dict[str, object]:
    """What controller/runtime/heap.py's periodic thaw would reclaim now: cycles that died frozen
    (its leak until then), and how long that full pass takes. Everything is frozen again after."""
    frozen = gc.get_freeze_count()
    began = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    took = time.perf_counter() - began
    gc.freeze()
    return {"frozenBefore": frozen, "collected": collected, "seconds": round(took, 3)}


def _trace(signum: int, frame: FrameType | None) -> None:
    if not tracemalloc.is_tracing():
        tracemalloc.start(_FRAMES)


if os.environ.get("BENCH_TASKS_FILE"):
    signal.signal(signal.SIGUSR1, _dump)
    gc.callbacks.append(_gc_timer)
    setattr(asyncio.BaseEventLoop, "run_forever", _run_forever)  # noqa: B010 - mypy: no method assignment
    setattr(asyncio.Handle, "_run", _timed_run)  # noqa: B010 - as above
    if _FRAMES:
        signal.signal(signal.SIGUSR2, _trace)
