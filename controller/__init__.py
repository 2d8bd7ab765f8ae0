"""match-list-change-detector: a Kubernetes operator that watches FOGIS referee match lists."""

__version__ = "0.1.0"
USER_AGENT = f"match-list-change-detector/{__version__}"
