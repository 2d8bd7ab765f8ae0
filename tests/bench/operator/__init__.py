"""The operator at scale, against the real local control plane (ARCHITECTURE.md section 9).

    python -m tests.bench.operator [--watchers 1000] [--triggers 50] [--idle-seconds 20]
    make bench BENCH_WATCHERS=1000        # make bench alone runs 300 (about 2.5 minutes)

N MatchWatchers on one operator process, all on the same two slots (a 6-field cron with seconds,
the MLCD_ALLOW_SECONDS_SCHEDULES test hook): the first slot is every watcher's baseline run (FOGIS
login, snapshot created), the second a steady-state run (session reused, snapshot unchanged).
Then manual triggers, one at a time and as a burst, and an idle stretch. FOGIS is the fake, in a
process of its own so its CPU is not the benchmark's; the operator is `python -m controller
operator` as in the integration tests, at INFO like production.

Where the figures come from:
- start lag: the operator's histogram matchwatcher_schedule_lag_seconds (run start minus slot,
  observed before the run's first I/O); quantiles are interpolated inside buckets, like
  Prometheus' histogram_quantile, so read them to the bucket bounds (..., 0.5, 1, 2, 5 s).
- "status landed": when this process saw the run's status patch on a watch of the watchers.
- trigger latency: annotation patch sent (the `kubectl annotate` equivalent) until the watch
  shows status.lastHandledTrigger = the value. That includes the whole run (session reuse: one
  FOGIS request, Secret and ConfigMap reads) and the status patch; the operator's own
  run-duration histogram for manual runs is printed next to it to tell the two apart.
- CPU and memory: /proc/<pid>/stat and /proc/<pid>/status of each process.
- asyncio tasks, the httpcore pools' connections and full GC pauses: a SIGUSR1 hook loaded into
  the operator through PYTHONPATH (taskprobe/sitecustomize.py); nothing in controller/ knows it.
- the fake FOGIS runs in its own process, so its CPU is not the operator's.
- slow figures come with their cause: --py-spy profiles each slot, --tracemalloc traces what the
  watchers keep alive (both slow the operator down: diagnostic runs, not measurements).

Prints figures only; it asserts nothing about time, so a slow machine cannot fail a build. It
starts the local control plane when none runs (and stops it again), else reuses it, and removes
what it created except the empty namespace (no namespace controller runs to finalise it).
"""
