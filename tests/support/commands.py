"""Running kubectl, helm and the like: their output, or an AssertionError carrying their stderr."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 300,
) -> str:
    """stdout of `argv`; with `check`, a non-zero exit fails with the end of its stderr."""
    result = subprocess.run(
        list(argv),
        input=stdin,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def kubectl(
    kubeconfig: str,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 300,
) -> str:
    return run_command(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        stdin=stdin,
        check=check,
        timeout=timeout,
    )


def end(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send `sig` unless it exited, wait up to `timeout` seconds, then SIGKILL; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
