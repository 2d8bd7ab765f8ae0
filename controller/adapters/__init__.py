"""The only code that talks to the outside world (the Kubernetes API, FOGIS, webhooks, Apprise,
DNS, the file system, Prometheus); library errors become controller.core.errors."""
