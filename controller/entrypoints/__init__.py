"""Processes: the kopf handlers (the only kopf import), run-once, the kubectl plugin.
controller/__main__.py dispatches to them."""
