"""match-list-change-detector: a Kubernetes operator that watches FOGIS referee match lists."""

__version__ = "0.1.0"
