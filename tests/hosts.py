"""Emulated hosts on one Linux machine: a network namespace per host, joined by a bridge.

:class:`EmulatedHosts` brings up ``n`` hosts, each one

- a network namespace of its own (``<PREFIX>-<pid>-<tag>-hK``) with ``lo`` and ``eth0``, the
  host's address ``10.213.0.(K+1)/24`` on it, in a private range that exists only inside these
  namespaces;
- joined to the others through a veth pair whose other end sits on a bridge in one more
  namespace, the switch (``...-sw``): nothing is added to the machine's own network namespace,
  and no packet of the hosts leaves the namespaces;
- a mount and a UTS namespace of its own, held by one ``sleep`` process: its own ``/dev/shm``
  (a tmpfs, so DGL's shared memory of one host is invisible to the other, as on two machines),
  its own hostname ``hK`` and an ``/etc/hosts`` naming every host (gloo finds the address to
  offer its peers from the hostname, as on a real cluster).

A command runs "on" a host through ``nsenter`` into the holder's namespaces (:meth:`Host.popen`,
:meth:`Host.run`), the way DGL's ``tools/launch.py`` runs it over ssh. Each host also gets its own
``TMPDIR`` (a folder of the run), since the hosts share the machine's file system.

Teardown (:meth:`EmulatedHosts.close`: on leaving the ``with`` block, at exit, on failure and on
Ctrl-C) kills every process in the hosts' namespaces, the holders (whose end drops each host's
``/dev/shm``), and deletes the namespaces, which takes the veth pairs and the bridge with them.
:func:`sweep` removes what an earlier run killed before its teardown left: namespaces with the
prefix whose creating process is gone. Where namespaces cannot be made (not root, no ``ip``),
:func:`unavailable` says why in one line.

Run as a script (``python tests/hosts.py``) it brings up two hosts, pings across and tears down.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: Every namespace made here starts with it; :func:`sweep` looks for it.
PREFIX = "rvgh"
#: The hosts' network: 10.213.0.0/24, host K at .K+1 (exists only inside the namespaces).
SUBNET = "10.213.0"
TOOLS = ("ip", "nsenter", "unshare", "tc")
_TAGS = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str:
    """Why emulated hosts cannot be made here, in one line ('' when they can)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"emulated hosts need {', '.join(missing)} (iproute2, util-linux), not found on PATH"
    if os.geteuid() != 0:
        return "emulated hosts need root (network and mount namespaces); run the test as root"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    _ip("netns", "del", probe, check=False)
    if made.returncode:
        return f"cannot make a network namespace here: {' '.join(made.stderr.split())[:200]}"
    return ""


def netem_unavailable() -> str:
    """Why ``tc qdisc ... netem`` cannot be used here ('' when it can): the kernel may lack sch_netem."""
    probe = f"{PREFIX}-{os.getpid()}-netem"
    _ip("netns", "add", probe, check=False)
    try:
        _ip("-n", probe, "link", "set", "lo", "up", check=False)
        done = subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "delay", "1ms"], capture_output=True, text=True, timeout=30)  # fmt: skip
        if done.returncode:
            return f"tc netem is unavailable (this kernel lacks sch_netem?): {' '.join(done.stderr.split())[:200]}"
        return ""
    finally:
        _ip("netns", "del", probe, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> List[str]:
    done = _ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _kill_namespace(name: str) -> None:
    """Every process in network namespace ``name`` killed (SIGKILL) and reaped by whoever is its parent."""
    for _ in range(50):
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def sweep(prefix: str = PREFIX) -> List[str]:
    """Remove the namespaces with ``prefix`` whose creating process (the pid in the name) is gone,
    and their folders in the temporary directory.

    They are what a run killed before its teardown (SIGKILL, a lost machine) left behind. Returns
    the namespaces' names.
    """
    removed = []
    for name in _namespaces():
        parts = name.split("-")
        if parts[0] != prefix or len(parts) < 2 or not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        _kill_namespace(name)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}-*"):  # the hosts' folders (TMPDIR, /etc/hosts)
        parts = folder.name.split("-")
        if folder.is_dir() and not folder.is_symlink() and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(folder, ignore_errors=True)
    return removed


class Host:
    """One emulated host: its name (``hK``), address, namespace and the holder of its mounts."""

    def __init__(self, index: int, netns: str, folder: Path) -> None:
        self.index, self.netns, self.folder = index, netns, folder
        self.name = f"h{index}"
        self.address = f"{SUBNET}.{index + 1}"
        self.tmp = folder / "tmp"
        self.holder: Optional[subprocess.Popen] = None

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.address}, netns {self.netns})"

    def command(self, argv: Sequence[str]) -> List[str]:
        """``argv`` as run on this host (in its network, mount and UTS namespaces)."""
        assert self.holder is not None, "the host is not up"
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "-u", "--", *argv]

    def env(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.tmp), **(extra or {})}

    def popen(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None, **kwargs) -> subprocess.Popen:
        """Start ``argv`` on this host, in a session of its own (so that a signal to it reaches its children)."""
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.command(argv), env=self.env(env), **kwargs)

    def run(self, argv: Sequence[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        env = kwargs.pop("env", None)
        return subprocess.run(self.command(argv), env=self.env(env), timeout=timeout, **kwargs)

    def pids(self) -> List[int]:
        """The processes running on this host, its holder excepted."""
        found = [int(p) for p in _ip("netns", "pids", self.netns, check=False).stdout.split() if p.isdigit()]
        return [pid for pid in found if self.holder is None or pid != self.holder.pid]

    def shared_memory(self) -> List[str]:
        """What this host's /dev/shm holds."""
        return sorted(self.run(["ls", "-A", "/dev/shm"]).stdout.split())

    def counters(self) -> Dict[str, int]:
        """``eth0``'s byte and packet counters (rx_bytes, tx_bytes, rx_packets, tx_packets)."""
        names = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
        paths = [f"/sys/class/net/eth0/statistics/{name}" for name in names]
        values = subprocess.run(["ip", "netns", "exec", self.netns, "cat", *paths], capture_output=True,
                                text=True, check=True, timeout=30).stdout.split()  # fmt: skip
        return dict(zip(names, map(int, values)))

    def link(self, up: bool) -> None:
        """Take this host's network link down (``ip link set eth0 down``) or up again."""
        _ip("-n", self.netns, "link", "set", "eth0", "up" if up else "down")

    def tc(self, *args: str) -> subprocess.CompletedProcess:
        """``tc ARGS`` on this host (e.g. ``qdisc add dev eth0 root netem delay 20ms loss 1%``)."""
        return subprocess.run(["ip", "netns", "exec", self.netns, "tc", *args], capture_output=True, text=True,
                              check=True, timeout=30)  # fmt: skip


class EmulatedHosts:
    """``n`` emulated hosts (see the module); a context manager that tears them down on leaving.

    ``tag`` goes into the names (``rvgh-PID-TAG-hK``; default a counter, so every set of a
    process has names of its own).
    """

    def __init__(
        self, n: int = 2, tag: Optional[str] = None, folder: Optional[Path] = None, shm_size: str = "2g"
    ) -> None:
        if not 1 <= n <= 200:
            raise ValueError(f"1 to 200 hosts, not {n}")
        tag = tag if tag is not None else f"t{next(_TAGS)}"
        self.n, self.tag, self.shm_size = n, tag, shm_size
        self.base = f"{PREFIX}-{os.getpid()}-{tag}"
        self.switch = f"{self.base}-sw"
        self._own_folder = folder is None
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix=f"{self.base}-"))
        self.hosts: List[Host] = [Host(i, f"{self.base}-h{i}", self.folder / f"h{i}") for i in range(self.n)]
        self._made: List[str] = []
        self._closed = False

    def __enter__(self) -> "EmulatedHosts":
        atexit.register(self.close)
        try:
            self._up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __iter__(self):
        return iter(self.hosts)

    def __len__(self) -> int:
        return self.n

    @property
    def namespaces(self) -> List[str]:
        return [self.switch] + [h.netns for h in self.hosts]

    def _up(self) -> None:
        sweep()
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        names = "\n".join(f"{h.address} {h.name}" for h in self.hosts)
        for host in self.hosts:
            _ip("netns", "add", host.netns)
            self._made.append(host.netns)
            port = f"p{host.index}"
            _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _ip("-n", self.switch, "link", "set", port, "master", "br0")
            _ip("-n", self.switch, "link", "set", port, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            host.tmp.mkdir(parents=True, exist_ok=True)
            hosts_file = host.folder / "hosts"
            hosts_file.write_text(f"127.0.0.1 localhost\n{names}\n")
            script = (f"mount -t tmpfs -o size={self.shm_size},mode=1777 tmpfs /dev/shm && "
                      f"mount --bind {hosts_file} /etc/hosts && hostname {host.name} && echo up && exec sleep 86400")  # fmt: skip
            host.holder = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--propagation", "private",
                 "sh", "-c", script],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                preexec_fn=_die_with_parent, start_new_session=True,
            )  # fmt: skip
            line = host.holder.stdout.readline().strip()
            if line != "up":
                raise RuntimeError(f"host {host.name} did not come up: {host.holder.stderr.read()[-300:]}")

    def close(self) -> None:
        """Kill everything on the hosts, drop their /dev/shm, delete the namespaces (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        previous = _block_interrupts()
        try:
            for host in self.hosts:
                if host.netns in self._made:
                    _kill_namespace(host.netns)
                if host.holder is not None:
                    host.holder.kill()
                    host.holder.wait(timeout=30)
                    for stream in (host.holder.stdout, host.holder.stderr):
                        if stream:
                            stream.close()
            for name in reversed(self._made):
                _ip("netns", "del", name, check=False)
            if self._own_folder:
                shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            _restore_interrupts(previous)

    def ping(self, a: int, b: int) -> bool:
        """Whether host ``a`` reaches host ``b`` (one TCP-free check: ``ping -c 1``, else a TCP connect)."""
        target = self.hosts[b].address
        code = (f"import socket,sys\ns=socket.socket();s.settimeout(3)\n"
                f"try:\n s.connect(('{target}', 9))\nexcept ConnectionRefusedError: sys.exit(0)\nexcept OSError: sys.exit(1)\n")  # fmt: skip
        import sys

        return self.hosts[a].run([sys.executable, "-c", code], timeout=30).returncode == 0


def _die_with_parent() -> None:
    """In the holder, before exec: SIGKILL when the process that made the hosts dies (Linux prctl)."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _block_interrupts():
    if hasattr(signal, "pthread_sigmask"):
        return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    return None


def _restore_interrupts(previous) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


if __name__ == "__main__":
    import sys

    why = unavailable()
    if why:
        print(f"Error: {why}", file=sys.stderr)
        sys.exit(1)
    with EmulatedHosts(2, tag="demo") as hosts:
        print(hosts.hosts, "h0 reaches h1:", hosts.ping(0, 1))
