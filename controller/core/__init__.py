"""Pure rules and value types: no I/O, none of asyncio, kopf, kubernetes, httpx, apprise or
prometheus_client. Everything here is a function of its arguments, tested with tables."""
