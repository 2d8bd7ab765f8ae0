"""A real local control plane: etcd + kube-apiserver on 127.0.0.1 (the envtest model).

Used by `hack/local-cluster up|down|status|env` and by the pytest session fixture, so the demo,
developers and tests start the very same thing. Binaries come from KUBEBUILDER_ASSETS, from PATH,
or are built once from Go modules by hack/build-control-plane into a per-user cache.
Runtime state (data, certs, kubeconfig, logs, pids) lives in <checkout>/.cache/local-cluster/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".cache" / "local-cluster"
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
READY_TIMEOUT_SECONDS = 90.0
SERVICE_CIDR = "198.19.0.0/16"
APISERVER_ARGV_FILE = "apiserver-argv.json"


class ClusterError(RuntimeError):
    """The control plane could not be built or started; the message says what to look at."""


@dataclass(frozen=True)
class ClusterInfo:
    server: str
    kubeconfig: str
    etcd_pid: int
    apiserver_pid: int
    version: str

    @classmethod
    def load(cls, state_dir: Path = STATE_DIR) -> ClusterInfo | None:
        try:
            data = json.loads((state_dir / "cluster.json").read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def _log(message: str) -> None:
    print(f"local-cluster: {message}", file=sys.stderr, flush=True)


def find_binaries() -> Path:
    """Directory holding kube-apiserver and etcd: KUBEBUILDER_ASSETS, PATH, or a cached build."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and all((Path(assets) / b).is_file() for b in ("kube-apiserver", "etcd")):
        return Path(assets)
    apiserver, etcd = shutil.which("kube-apiserver"), shutil.which("etcd")
    if apiserver and etcd and Path(apiserver).parent == Path(etcd).parent:
        return Path(apiserver).parent
    result = subprocess.run(
        [str(ROOT / "hack" / "build-control-plane")], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError("building kube-apiserver/etcd failed (see the go output above)")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _get(url: str, token: str, timeout: float = 2.0) -> tuple[int, str]:
    # The serving cert is self-signed by the apiserver itself; this is loopback-only.
    context = ssl._create_unverified_context()  # noqa: S323 - local self-signed apiserver
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status, response.read().decode()
    except OSError as exc:
        return 0, str(exc)


def healthy(info: ClusterInfo, state_dir: Path = STATE_DIR) -> bool:
    if not (alive(info.etcd_pid) and alive(info.apiserver_pid)):
        return False
    token = (state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    status, _ = _get(f"{info.server}/readyz", token)
    return status == 200


def _write_kubeconfig(path: Path, server: str, token: str, ca: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            # apiserver.crt holds the serving cert and the self-made CA that signed it.
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def _wait_ready(
    server: str, token: str, procs: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}; see {logs}")
        status, last = _get(f"{server}/readyz", token)
        if status == 200:
            return
        time.sleep(0.25)
    raise ClusterError(f"kube-apiserver not ready after {READY_TIMEOUT_SECONDS}s: {last[:300]}")


def up(state_dir: Path = STATE_DIR) -> ClusterInfo:
    """Start etcd + kube-apiserver unless a healthy copy already runs; return where it is."""
    existing = ClusterInfo.load(state_dir)
    if existing is not None and healthy(existing, state_dir):
        return existing
    down(state_dir, quiet=True)
    bin_dir = find_binaries()
    state_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("etcd", "certs", "logs"):
        (state_dir / sub).mkdir(exist_ok=True)
    sa_key = state_dir / "certs" / "sa.key"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True
    )
    token = os.urandom(16).hex()
    (state_dir / ADMIN_TOKEN_FILE).write_text(token)
    (state_dir / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')

    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    logs = state_dir / "logs"
    # start_new_session: the processes outlive `hack/local-cluster up` and ignore the caller's ^C.
    etcd = subprocess.Popen(
        [
            str(bin_dir / "etcd"),
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",  # throwaway data: speed over durability, as envtest does
            "--log-level=warn",
        ],
        stdout=(logs / "etcd.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    apiserver_argv = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        f"--cert-dir={state_dir / 'certs'}",
        f"--secure-port={api_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # RFC 2544 addresses, never a private range: the `kubernetes` Service is 198.19.0.1,
        # which the self-signed serving certificate carries (pods on hack/local-node use it).
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The local node's kubelet registers a name nobody resolves; reach it by address.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={sa_key}",
        f"--service-account-signing-key-file={sa_key}",
        "--authorization-mode=RBAC",
        f"--token-auth-file={state_dir / 'tokens.csv'}",
        "--allow-privileged=true",
        "--endpoint-reconciler-type=none",
        "--v=0",
    ]
    # Kept so restart_apiserver() can start the very same command on the same port.
    (state_dir / APISERVER_ARGV_FILE).write_text(json.dumps(apiserver_argv))
    apiserver = _start_apiserver(apiserver_argv, logs)
    server = f"https://127.0.0.1:{api_port}"
    try:
        _wait_ready(server, token, {"etcd": etcd, "kube-apiserver": apiserver}, logs)
    except ClusterError:
        for proc in (apiserver, etcd):
            proc.kill()
        raise
    _, version_json = _get(f"{server}/version", token)
    kubeconfig = state_dir / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, token, state_dir / "certs" / "apiserver.crt")
    info = ClusterInfo(
        server=server,
        kubeconfig=str(kubeconfig),
        etcd_pid=etcd.pid,
        apiserver_pid=apiserver.pid,
        version=json.loads(version_json).get("gitVersion", "unknown"),
    )
    (state_dir / "cluster.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def _start_apiserver(argv: list[str], logs: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdout=(logs / "kube-apiserver.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def restart_apiserver(state_dir: Path = STATE_DIR, *, kill: bool = True) -> ClusterInfo:
    """Stop only kube-apiserver (SIGKILL, or SIGTERM with `kill=False`) and start it again with
    the same flags, port and certificates; etcd and its data stay as they are (the soak test's
    API server outage). Returns once it is ready again."""
    info = ClusterInfo.load(state_dir)
    if info is None:
        raise ClusterError(f"no local cluster in {state_dir}")
    if kill and alive(info.apiserver_pid):
        os.kill(info.apiserver_pid, signal.SIGKILL)
    stop_process(info.apiserver_pid)
    deadline = time.monotonic() + 10
    while alive(info.apiserver_pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.apiserver_pid, os.WNOHANG)  # our child when we started it
        time.sleep(0.05)
    argv = json.loads((state_dir / APISERVER_ARGV_FILE).read_text())
    apiserver = _start_apiserver(argv, state_dir / "logs")
    token = (state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    try:
        _wait_ready(info.server, token, {"kube-apiserver": apiserver}, state_dir / "logs")
    except ClusterError:
        apiserver.kill()
        raise
    info = ClusterInfo(**{**asdict(info), "apiserver_pid": apiserver.pid})
    (state_dir / "cluster.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; reaps it when it is our child."""
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        # Reap it when it is our child (the pytest fixture); harmless otherwise.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def down(state_dir: Path = STATE_DIR, *, quiet: bool = False) -> None:
    """Stop both processes and remove their data."""
    info = ClusterInfo.load(state_dir)
    if info is not None:
        stop_process(info.apiserver_pid)
        stop_process(info.etcd_pid)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    if not quiet:
        _log("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/local-cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            started = time.monotonic()
            info = up()
            took = time.monotonic() - started
            _log(f"kube-apiserver {info.version} at {info.server} ({took:.1f}s)")
            print(f"export KUBECONFIG={info.kubeconfig}")
        elif args.command == "down":
            down()
        elif args.command == "kubeconfig":
            print(STATE_DIR / "kubeconfig")
        else:
            running = ClusterInfo.load()
            if running is None or not healthy(running):
                _log("not running")
                return 1
            _log(f"running: kube-apiserver {running.version} at {running.server}")
            print(f"export KUBECONFIG={running.kubeconfig}")
    except ClusterError as exc:
        _log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
