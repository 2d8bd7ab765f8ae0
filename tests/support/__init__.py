"""What the tests, the benchmark and the demo share: starting things, reaching them, waiting.

- `waiting`: `wait_for`, polling a probe against a deadline (no fixed sleeps).
- `net`: plain HTTP requests to 127.0.0.1 (probes, control APIs of the fakes).
- `commands`: running kubectl and other programs, failing with their stderr.
- `watchers`: the MatchWatcher API coordinates, a FOGIS spec, the Ready condition.
- `cluster`: `Cluster`, typed access to the API server, and the ServiceAccount kubeconfig.
- `operator_process`: the operator as a subprocess (`python -m controller operator`).
- `fake_process`: a fake (`python -m tests.fakes.…`) as a subprocess of its own.
- `metrics`: reading the operator's Prometheus text with `prometheus_client.parser`.
- `clock`: `FakeTime`, an injectable clock and sleep for unit tests (no real waiting).

Direction of imports: `hack/` runs without `tests/` (`hack/local-cluster`, `hack/local-node`), so
what both need lives in hack and is imported from there: `hack.local_cluster.free_port` and
`ROOT` are the only ones. Only the demo goes the other way (`hack/demo.py` imports this package
and `tests.fakes`), since `make demo` runs from a checkout anyway.
"""
