"""Processes: the operator (kopf's command line and handlers: the only kopf imports), run-once,
the kubectl plugin. controller/__main__.py dispatches to them."""
