"""Joining a job: the launcher's variables, the collectives' time limit, the rendezvous port and its
watchdog, and one line for each way a rank can fail (its own error, a peer's, a lost contact).

>>> describe_error(ValueError("bad  value"))
'ValueError: bad value'
"""

from __future__ import annotations

import os
import re
import socket
import sys
from typing import Any, Optional, Sequence, Tuple

import torch.distributed as dist

from ..errors import ConfigError, DistributedError, PeerFailedError, is_user_error
from ..signals import end_process

#: Seconds a collective may wait before the job fails (env ``REVGNN_DGL_DIST_TIMEOUT``).
DEFAULT_TIMEOUT_S = 1800.0


ENV_TIMEOUT = "REVGNN_DGL_DIST_TIMEOUT"


def timeout_seconds(timeout_s: Optional[float] = None) -> float:
    """The collectives' time limit: the argument, else ``$REVGNN_DGL_DIST_TIMEOUT``, else 1800 s."""
    if timeout_s is not None:
        value: Any = timeout_s
    else:
        value = os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{ENV_TIMEOUT}={value!r} is not a number of seconds.") from None
    from ..limits import MAX_DIST_TIMEOUT_S

    if not 0 < seconds <= MAX_DIST_TIMEOUT_S:  # also refuses nan and inf (timedelta overflows past ~1e14 s)
        raise ConfigError(f"the collectives' timeout must be a positive number of seconds up to {MAX_DIST_TIMEOUT_S:.0f} "
                          f"(a week), got {value!r}.")  # fmt: skip
    return seconds


def env_count(name: str, default: Optional[str] = None, minimum: int = 0) -> int:
    """A launcher's integer variable (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): one line when it is not one."""
    text = os.environ.get(name, default)
    try:
        value = int(str(text))
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise DistributedError(f"{name}={text!r:.40} is not an integer of at least {minimum}; a launcher (torchrun) "
                               "sets it: start the job with torchrun or `revgnn-dgl train --nproc N`.")  # fmt: skip
    return value


def _env_or(pair: Tuple[str, int]) -> int:
    """A launcher's integer variable for an error line, or the default when it is not one."""
    try:
        return env_count(pair[0])
    except DistributedError:
        return pair[1]


def this_host() -> Tuple[str, str]:
    """``(hostname, address)`` of this machine: the address its hostname resolves to, the one gloo offers its peers."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        address = "?"
    return name, address


def _check_port_free(port: int, where: str) -> None:
    """Refuse a port another program listens on before torch tries it (and logs three C++ lines)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the store binds: TIME_WAIT is no obstacle
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as err:
            raise DistributedError(
                f"could not host the job at {where}: {err.strerror or err} (another program listens on port {port}; "
                "choose another --master-port)"
            ) from None


def _rendezvous_timed_out(rank: int, world: int, where: str, seconds: float) -> None:
    """The watchdog of :func:`init_from_env`: one line, then this process ends (exit 1)."""
    print(
        f"Error: rank {rank} of {world} could not join the job at {where} within {seconds:g} s (--dist-timeout): "
        "the other processes did not come, or the port belongs to another program.",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    end_process(1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (bind to port 0 and read the one the system chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def describe_error(err: BaseException) -> str:
    """One line: the message of a user error, ``Type: message`` of anything else."""
    text = " ".join(str(err).split())
    if is_user_error(err):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _is_comm_error(err: BaseException) -> bool:
    """Whether ``err`` came from a collective whose peer went away or timed out."""
    if isinstance(err, getattr(dist, "DistBackendError", ())):
        return True
    text = str(err)
    needles = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
               "ProcessGroupGloo", "ProcessGroupNCCL", "NCCL error")  # fmt: skip
    return isinstance(err, RuntimeError) and any(n in text for n in needles)


def classify_error(err: BaseException, rank: int, world: int, hosts: Sequence[Tuple[str, str]] = ()) -> Tuple[str, str]:
    """``(kind, line)`` for a rank's failure: ``error`` (its own), ``peer`` (another rank's,
    shared by :meth:`Context.check`) or ``lost`` (a collective failed: a peer probably died, or
    its host was cut off). With ``hosts`` (each rank's, :attr:`Context.hosts`) a lost contact
    names the host: the one whose address the error gives, else every other host of the job."""
    if isinstance(err, PeerFailedError):
        return "peer", str(err)
    if _is_comm_error(err):
        first = " ".join(str(err).split())[:300]
        return "lost", (
            f"rank {rank} of {world} lost contact with {lost_peers(first, rank, hosts)} ({first}); "
            "another rank probably failed first (see its error)"
        )
    return "error", f"rank {rank} of {world}: {describe_error(err)}"


def lost_peers(message: str, rank: int, hosts: Sequence[Tuple[str, str]]) -> str:
    """Who a rank lost contact with: ``rank 1 on host h1 (10.213.0.2)``, or ``the other processes``.

    The peer is the one whose address gloo's message names (``Read error [10.213.0.2]:46787``);
    a timeout names none, and then every rank on another host is named (on one host: nobody).

    >>> hosts = [("h0", "10.0.0.1"), ("h1", "10.0.0.2")]
    >>> lost_peers("Read error [10.0.0.2]:4678: Connection reset by peer", 0, hosts)
    'rank 1 on host h1 (10.0.0.2)'
    >>> lost_peers("Timed out waiting 20000ms for recv operation to complete", 1, hosts)
    'rank 0 on host h0 (10.0.0.1)'
    >>> lost_peers("Read error [127.0.0.1]:4678", 0, [("vm", "127.0.0.1")] * 2)
    'the other processes'
    """
    if len(hosts) <= rank:
        return "the other processes"
    found = re.search(r"\[([0-9A-Fa-f.:]+)\]:\d+", message)
    if found:
        ranks = [r for r, (_, address) in enumerate(hosts) if address == found.group(1) and r != rank]
    else:
        ranks = [r for r, host in enumerate(hosts) if host != hosts[rank]]
    if all(hosts[r] == hosts[rank] for r in ranks):  # one host: its address tells no rank apart
        return "the other processes"
    names = ", ".join(dict.fromkeys(f"{hosts[r][0]} ({hosts[r][1]})" for r in ranks))
    which = f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))
    return f"{which} on host {names}" if "," not in names else f"{which} on hosts {names}"
