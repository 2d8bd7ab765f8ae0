"""The in-process async machinery that wires core rules to adapters: the dispatcher's heap of due
steps, schedulers, leadership, a run's seams, politeness, heap freezing, bug reports, the logging
policy. No kopf."""
