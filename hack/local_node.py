"""A real single-node cluster on this machine: the local control plane plus a kubelet.

`hack/local-node up|down|status` (root only) starts, on top of hack/local_cluster.py's etcd +
kube-apiserver: containerd + runc (Debian packages, installed when missing) with CNI bridge
networking, kube-controller-manager (garbage collection, namespace deletion, ServiceAccounts),
kube-scheduler, a kubelet, kube-proxy (iptables mode: Services work from pods) and CoreDNS for
`*.svc` names. The Kubernetes binaries come from hack/build-control-plane --node, CoreDNS from
hack/tools, the pause image from hack/images; all are cached per user outside the checkout.

Addresses (RFC 2544, never a private range): pods 198.18.0.0/16 on the bridge `mlcd0` whose
address 198.18.0.1 is also the node IP and CoreDNS's; Services 198.19.0.0/16, DNS at
198.19.0.10. The apiserver stays on 127.0.0.1: one DNAT rule (with route_localnet) sends the
`kubernetes` Service, 198.19.0.1:443, to it.

`down` undoes everything by PID and by name: pods first (so CNI removes their veths and rules),
then the daemons, kubelet mounts, kubepods cgroups, our iptables chains, the bridge and every
sysctl we changed (values recorded at `up`). What LOCAL-NODE.md in the design notes found along
the way is commented where it is handled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hack import local_cluster
from hack.local_cluster import alive, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".cache" / "local-node"
# containerd's and the kubelet's own directories: they hold mounts and root-owned files, so they
# stay out of the checkout. Images imported into containerd survive `down` (a cache, not state).
RUN_DIR = Path("/run/mlcd-node")
LIB_DIR = Path("/var/lib/mlcd-node")
CONTAINERD_SOCK = RUN_DIR / "containerd" / "containerd.sock"
NODE_NAME = "mlcd-node"
BRIDGE = "mlcd0"
NODE_IP = "198.18.0.1"
POD_CIDR = "198.18.0.0/16"
SERVICE_CIDR = "198.19.0.0/16"
KUBERNETES_SERVICE_IP = "198.19.0.1"
DNS_SERVICE_IP = "198.19.0.10"
NAT_CHAIN = "MLCD-NODE"
PAUSE_IMAGE = "localhost/mlcd-pause:3.10"
APT_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
}
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PACKAGE = "containernetworking-plugins"
# Set to 1 here: routing between pods, the apiserver DNAT to loopback, Service rules for
# bridged pod-to-pod traffic.
SYSCTLS_SET = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
)
# Changed by the kubelet (its kernel tunables) or kube-proxy; recorded so `down` restores them.
SYSCTLS_RECORDED = (
    *SYSCTLS_SET,
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
CONTAINER_LOG_LINKS = Path("/var/log/containers")  # the kubelet's fixed symlink directory
NODE_READY_TIMEOUT_SECONDS = 120.0


class NodeError(RuntimeError):
    """The node could not be started; the message says what to look at."""


@dataclass
class NodeInfo:
    kubeconfig: str
    started: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path = STATE_DIR) -> NodeInfo | None:
        try:
            return cls(**json.loads((state_dir / "node.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, state_dir: Path = STATE_DIR) -> None:
        (state_dir / "node.json").write_text(json.dumps(asdict(self), indent=2))


def _log(message: str) -> None:
    print(f"local-node: {message}", file=sys.stderr, flush=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def preflight() -> None:
    """One clear line for each thing this machine lacks, before anything is changed."""
    if sys.platform != "linux":
        raise NodeError("a local node needs Linux")
    if os.geteuid() != 0:
        raise NodeError("a local node needs root (containerd, kubelet, iptables); run it as root")
    filesystems = Path("/proc/filesystems").read_text()
    if "overlay" not in filesystems:
        raise NodeError("a local node needs the overlay file system (containerd's snapshotter)")
    if not Path("/proc/sys/net/bridge").is_dir():
        raise NodeError("a local node needs br_netfilter (/proc/sys/net/bridge is missing)")
    if not Path("/sys/fs/cgroup").is_dir():
        raise NodeError("a local node needs cgroups mounted at /sys/fs/cgroup")


def packages() -> list[str]:
    """The Debian packages `up` installs when missing (`make ci-cold` removes them)."""
    return sorted({*APT_PACKAGES.values(), CNI_PACKAGE})


def install_packages() -> None:
    missing = sorted({pkg for cmd, pkg in APT_PACKAGES.items() if shutil.which(cmd) is None})
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.append(CNI_PACKAGE)
    if not missing:
        return
    _log(f"installing {' '.join(missing)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            raise NodeError(f"apt-get could not install {' '.join(missing)}")


def _built(command: list[str]) -> str:
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{' '.join(command)} failed (see its output above)")
    return result.stdout.strip().splitlines()[-1]


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _set_sysctls(info: NodeInfo) -> None:
    for name in SYSCTLS_RECORDED:
        with contextlib.suppress(OSError):
            info.sysctls.setdefault(name, _sysctl_path(name).read_text().strip())
    for name in SYSCTLS_SET:
        _sysctl_path(name).write_text("1")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _containerd_config(state: Path) -> Path:
    return _write(
        state / "containerd.toml",
        f"""version = 2
root = "{LIB_DIR / "containerd"}"
state = "{RUN_DIR / "containerd"}"

[grpc]
  address = "{CONTAINERD_SOCK}"

[plugins."io.containerd.grpc.v1.cri"]
  # registry.k8s.io is out of reach: a pause image of our own (hack/images pause).
  sandbox_image = "{PAUSE_IMAGE}"
  # This VM's capability bounding set lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  # to the kubelet's -998 and every sandbox would fail without this.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{state / "cni"}"
""",
    )


def _cni_config(state: Path) -> None:
    conflist = {
        "cniVersion": "1.0.0",
        "name": "mlcd",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # No masquerade: pods talk only to pods, Services and the node, never beyond.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(RUN_DIR / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    _write(state / "cni" / "10-mlcd.conflist", json.dumps(conflist, indent=2))
    _write(
        state / "cni" / "99-loopback.conf",
        json.dumps({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}),
    )


def _kubelet_config(state: Path, healthz_port: int) -> Path:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The apiserver talks to the kubelet (logs, exec) without a client certificate.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # this VM has cgroup v1 hierarchies
        "failSwapOn": False,
        "oomScoreAdj": 0,  # see kube-proxy's
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        "imageServiceEndpoint": f"unix://{CONTAINERD_SOCK}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": str(_write(state / "resolv.conf", f"nameserver {NODE_IP}\n")),
        # A small shared disk: never evict or garbage-collect our locally built images.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"nodefs.available": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
        "podLogsDir": str(LIB_DIR / "pod-logs"),
        "registerNode": True,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }
    return _write(state / "kubelet.yaml", json.dumps(config, indent=2))


def _kube_proxy_config(state: Path, kubeconfig: str) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": kubeconfig},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{free_port()}",
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
        # Lowering it needs CAP_SYS_RESOURCE, which this VM's bounding set lacks.
        "oomScoreAdj": 0,
        # Leave the host's conntrack sysctls alone (0 = do not set).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return _write(state / "kube-proxy.yaml", json.dumps(config, indent=2))


def _corefile(state: Path, kubeconfig: str) -> Path:
    return _write(
        state / "Corefile",
        f""".:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""",
    )


def _start(info: NodeInfo, name: str, argv: list[str], logs: Path) -> None:
    # Started directly, never through a shell, so the recorded PID is the daemon's own.
    # start_new_session: the daemons outlive `hack/local-node up` and ignore the caller's ^C.
    proc = subprocess.Popen(
        argv,
        stdout=(logs / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    info.pids[name] = proc.pid
    info.save()


def _wait(what: str, check: Callable[[], bool], timeout: float, info: NodeInfo, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, pid in info.pids.items():
            if not alive(pid):
                raise NodeError(f"{name} exited while waiting for {what}; see {logs / name}.log")
        if check():
            return
        time.sleep(0.25)
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}; see {logs}")


def _kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("kubectl", f"--kubeconfig={kubeconfig}", *args, check=False)


def _node_ready(kubeconfig: str) -> bool:
    result = _kubectl(
        kubeconfig,
        "get",
        "node",
        NODE_NAME,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    )
    return result.returncode == 0 and result.stdout.strip() == "True"


def _bridge_up() -> None:
    # Made here rather than by the CNI plugin, so the node IP (kubelet, CoreDNS) exists before the
    # first pod does; the bridge plugin adopts it.
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{NODE_IP}/16", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _apiserver_dnat(api_port: int) -> None:
    # The apiserver listens on 127.0.0.1 only (--endpoint-reconciler-type=none): send the
    # `kubernetes` Service to it from pods. route_localnet lets a DNAT to loopback be routed.
    _run("iptables", "-t", "nat", "-N", NAT_CHAIN, check=False)
    _run("iptables", "-t", "nat", "-F", NAT_CHAIN)
    _run(
        "iptables", "-t", "nat", "-A", NAT_CHAIN, "-d", f"{KUBERNETES_SERVICE_IP}/32", "-p", "tcp",
        "--dport", "443", "-j", "DNAT", "--to-destination", f"127.0.0.1:{api_port}",
    )  # fmt: skip
    if _run("iptables", "-t", "nat", "-C", "PREROUTING", "-j", NAT_CHAIN, check=False).returncode:
        _run("iptables", "-t", "nat", "-I", "PREROUTING", "1", "-j", NAT_CHAIN)


def _import_images() -> None:
    # The sandbox (pause) image must be in containerd before the first pod: hack/images builds it
    # once (cached) and imports it, since the socket exists by now.
    if subprocess.run([str(ROOT / "hack" / "images"), "pause"], check=False).returncode != 0:
        raise NodeError("hack/images pause failed (see its output above)")


def up(state_dir: Path = STATE_DIR) -> NodeInfo:
    """Start the node unless a healthy one runs; return where its kubeconfig is."""
    preflight()
    # Before anything else: the sweep below and `down` call iptables, conntrack and ip, which a
    # fresh machine lacks until this installs them.
    install_packages()
    existing = NodeInfo.load(state_dir)
    if existing is not None and healthy(existing):
        return existing
    if existing is not None:
        down(state_dir, quiet=True)
    elif _containerd_answers():
        # One node per machine: its addresses, bridge and directories are fixed.
        raise NodeError(
            f"another local node runs ({CONTAINERD_SOCK} answers), e.g. from another checkout: "
            "stop it there with `hack/local-node down` first"
        )
    else:
        _sweep(None)  # what a crashed or killed run may have left behind
    bin_dir = Path(_built([str(ROOT / "hack" / "build-control-plane"), "--node"]))
    coredns = _built([str(ROOT / "hack" / "tools"), "coredns"])
    cluster = local_cluster.up()
    kubeconfig = cluster.kubeconfig
    certs = local_cluster.STATE_DIR / "certs"
    api_port = int(cluster.server.rsplit(":", 1)[1])

    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    info = NodeInfo(kubeconfig=kubeconfig, started=time.time())
    info.save(state_dir)
    _set_sysctls(info)
    info.save(state_dir)
    _bridge_up()
    _apiserver_dnat(api_port)
    _cni_config(state_dir)
    for path in (RUN_DIR, LIB_DIR):
        path.mkdir(parents=True, exist_ok=True)

    _start(info, "containerd", ["containerd", "--config", str(_containerd_config(state_dir))], logs)
    _wait("containerd", CONTAINERD_SOCK.exists, 30, info, logs)
    _import_images()
    common = [f"--kubeconfig={kubeconfig}", "--v=1"]
    _start(
        info,
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            *common,
            f"--service-account-private-key-file={certs / 'sa.key'}",
            f"--root-ca-file={certs / 'apiserver.crt'}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--controllers=*",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ],
        logs,
    )
    _start(
        info,
        "kube-scheduler",
        [
            str(bin_dir / "kube-scheduler"),
            *common,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
        ],
        logs,
    )
    _start(
        info,
        "kubelet",
        [
            str(bin_dir / "kubelet"),
            *common,
            f"--config={_kubelet_config(state_dir, free_port())}",
            # A name the apiserver need not resolve: it reaches the kubelet by InternalIP.
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            f"--root-dir={LIB_DIR / 'kubelet'}",
            f"--cert-dir={LIB_DIR / 'kubelet-pki'}",
        ],
        logs,
    )
    _start(
        info,
        "kube-proxy",
        [
            str(bin_dir / "kube-proxy"),
            f"--config={_kube_proxy_config(state_dir, kubeconfig)}",
            "--v=1",
        ],
        logs,
    )
    _start(info, "coredns", [coredns, "-conf", str(_corefile(state_dir, kubeconfig))], logs)
    _kube_dns_service(kubeconfig)
    _wait("node Ready", lambda: _node_ready(kubeconfig), NODE_READY_TIMEOUT_SECONDS, info, logs)
    return info


def _kube_dns_service(kubeconfig: str) -> None:
    """kube-dns as on a real cluster: a Service at DNS_SERVICE_IP whose endpoint is CoreDNS on
    the node address (a selector-less Service with a hand-made EndpointSlice)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    ],
                },
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kube-dns-node",
                    "namespace": "kube-system",
                    "labels": {"kubernetes.io/service-name": "kube-dns"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        ],
    }
    manifest_file = STATE_DIR / "kube-dns.json"
    manifest_file.write_text(json.dumps(manifest))
    result = _kubectl(kubeconfig, "apply", "-f", str(manifest_file))
    if result.returncode != 0:
        raise NodeError(f"could not create the kube-dns Service: {result.stderr.strip()}")


def healthy(info: NodeInfo) -> bool:
    if not info.pids or not all(alive(pid) for pid in info.pids.values()):
        return False
    cluster = local_cluster.ClusterInfo.load()
    return cluster is not None and local_cluster.healthy(cluster) and _node_ready(info.kubeconfig)


def _drain(info: NodeInfo) -> None:
    """Delete every pod through the API while the kubelet still runs, so each sandbox is stopped
    the normal way (CNI DEL removes its veth, address lease and rules); nothing recreates them,
    the controller-manager and scheduler are already stopped."""
    if "kubelet" not in info.pids or not alive(info.pids["kubelet"]):
        return
    _kubectl(info.kubeconfig, "delete", "pods", "--all", "-A", "--force", "--grace-period=0",
             "--wait=false")  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _containerd_tasks():
        time.sleep(0.5)


def _containerd_tasks() -> list[str]:
    if not CONTAINERD_SOCK.exists():
        return []
    ctr = ["ctr", "--address", str(CONTAINERD_SOCK), "-n", "k8s.io", "tasks", "list", "-q"]
    return _run(*ctr, check=False).stdout.split()


def _kill_shims() -> None:
    # containerd-shim-runc-v2 processes outlive containerd; ours name our socket on their command
    # line. Killing a shim kills its container.
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(CONTAINERD_SOCK).encode() in cmdline and b"containerd" not in cmdline[:1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _remove_netns(since: float) -> None:
    # Network namespaces containerd made for our sandboxes and could not remove (forced stops).
    netns = Path("/run/netns")
    if not netns.is_dir():
        return
    for entry in netns.glob("cni-*"):
        with contextlib.suppress(OSError):
            if entry.lstat().st_mtime >= since:
                _run("umount", "-l", str(entry), check=False)
                entry.unlink()


def _remove_log_links() -> None:
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    for link in CONTAINER_LOG_LINKS.iterdir():
        if link.is_symlink() and os.readlink(link).startswith(str(LIB_DIR)):
            link.unlink()


def _unmount_under(*roots: Path) -> None:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    mounts = [line.split()[1].replace("\\040", " ") for line in lines]
    for mount in sorted(mounts, key=len, reverse=True):  # deepest first
        if any(mount == str(root) or mount.startswith(f"{root}/") for root in roots):
            _run("umount", "-l", mount, check=False)


def _remove_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        kubepods = hierarchy / "kubepods"
        if not kubepods.is_dir():
            continue
        # Deepest first: a cgroup directory can be removed only when it has no children.
        for directory in sorted(kubepods.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            kubepods.rmdir()


def _remove_iptables() -> None:
    # Our DNAT chain, then every chain kube-proxy, the kubelet and the CNI plugins made (KUBE-*,
    # CNI-*), with the jumps to them from the built-in chains; IPv4 and IPv6 alike.
    ours = ("KUBE-", "CNI-", NAT_CHAIN)
    # Without the tool there are no rules of ours to remove (a machine that never ran a node).
    for tool in (t for t in ("iptables", "ip6tables") if shutil.which(t)):
        for table in ("nat", "filter", "mangle"):
            rules = _run(tool, "-t", table, "-S", check=False).stdout.splitlines()
            for rule in rules:
                parts = shlex.split(rule)  # comments are quoted and hold spaces
                if (
                    parts[:1] == ["-A"]
                    and not parts[1].startswith(ours)
                    and any(p.startswith(ours) for p in parts[2:])
                ):
                    _run(tool, "-t", table, "-D", *parts[1:], check=False)
            chains = [r.split()[1] for r in rules if r.startswith("-N ")]
            for chain in (c for c in chains if c.startswith(ours)):
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in (c for c in chains if c.startswith(ours)):
                _run(tool, "-t", table, "-X", chain, check=False)


def _containerd_answers() -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(CONTAINERD_SOCK))
        except OSError:
            return False
    return True


def _sweep(info: NodeInfo | None) -> None:
    """Undo what a node did to the machine once its daemons are gone (also after a crash)."""
    _kill_shims()
    _unmount_under(LIB_DIR / "kubelet", RUN_DIR, LIB_DIR / "containerd")
    _remove_netns(info.started if info is not None else time.time())
    _remove_log_links()
    _remove_cgroups()
    _remove_iptables()
    if shutil.which("ip") and _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _run("ip", "link", "delete", BRIDGE, check=False)
    if info is not None:
        for name, value in info.sysctls.items():
            with contextlib.suppress(OSError):
                _sysctl_path(name).write_text(value)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    for directory in ("kubelet", "kubelet-pki", "pod-logs"):
        shutil.rmtree(LIB_DIR / directory, ignore_errors=True)


def down(state_dir: Path = STATE_DIR, *, quiet: bool = False) -> None:
    """Stop the node and undo every change it made to the machine; the control plane too."""
    info = NodeInfo.load(state_dir)
    if info is not None:
        for name in ("kube-controller-manager", "kube-scheduler"):
            if name in info.pids:
                stop_process(info.pids[name])
        _drain(info)
        for name in ("kubelet", "kube-proxy", "coredns", "containerd"):
            if name in info.pids:
                stop_process(info.pids[name])
    _sweep(info)
    local_cluster.down(quiet=True)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    if not quiet:
        _log("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/local-node", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "packages"])
    args = parser.parse_args(argv)
    try:
        if args.command == "packages":
            print("\n".join(packages()))
        elif args.command == "up":
            started = time.monotonic()
            info = up()
            _log(f"node {NODE_NAME} Ready ({time.monotonic() - started:.1f}s)")
            print(f"export KUBECONFIG={info.kubeconfig}")
        elif args.command == "down":
            preflight()
            down()
        else:
            running = NodeInfo.load()
            if running is None or not healthy(running):
                _log("not running")
                return 1
            _log(f"running: node {NODE_NAME} Ready")
            print(f"export KUBECONFIG={running.kubeconfig}")
    except (NodeError, local_cluster.ClusterError) as exc:
        _log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
