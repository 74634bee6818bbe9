r"""One machine of many in a DistDGL job: what a machine's command must know, from DGL's ip_config.

A DistDGL job over M machines has one ``ip_config`` file, the same on every machine, with one
``IP PORT`` line per machine (DGL's format: the graph servers of machine m listen on PORT,
PORT+1, ...). Machine m serves partition m and runs trainers ``m*T`` to ``m*T+T-1`` of the job
(``T = nproc / M``). ``revgnn-dgl train --partitions P --nproc N --ip-config FILE`` is then the
same command on every machine: each finds its own line by its addresses (as DGL's clients do:
an address of the line is one of this machine's), starts its graph servers (DGL server ids
``m*S`` to ``m*S+S-1``) and its T trainers, which join the job's ``torch.distributed`` group at
the first machine's address and ``--master-port``. Rank 0 (on the first machine) alone writes
the run directory.

>>> layout = Machines.parse(["10.0.0.1 30050", "10.0.0.2 30050"], machine=1, master_port=29500)
>>> layout.count, layout.machine, layout.master_addr, layout.first_rank(4), layout.server_ids(2)
(2, 1, '10.0.0.1', 2, [2, 3])
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import ConfigError

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class Machines:
    """The job's machines (``addresses``, in ip_config's order) and which of them this one is."""

    ip_config: str
    addresses: tuple
    machine: int
    master_port: int = DEFAULT_MASTER_PORT

    @property
    def count(self) -> int:
        return len(self.addresses)

    @property
    def master_addr(self) -> str:
        """Where rank 0 (the first machine's first trainer) hosts the job's rendezvous."""
        return self.addresses[0]

    def trainers(self, nproc: int) -> int:
        """Trainers on each machine for a job of ``nproc`` trainers."""
        if nproc % self.count:
            raise ConfigError(
                f"--nproc {nproc} trainers cannot be shared evenly by the {self.count} machines of {self.ip_config}; "
                f"give a multiple of {self.count} (--nproc counts the job's trainers, on all machines together)."
            )
        return nproc // self.count

    def first_rank(self, nproc: int) -> int:
        """The job rank of this machine's first trainer."""
        return self.machine * self.trainers(nproc)

    def server_ids(self, servers: int) -> List[int]:
        """DGL's ids of this machine's ``servers`` graph servers (machine m: ``m*S`` to ``m*S+S-1``)."""
        return [self.machine * servers + i for i in range(servers)]

    @classmethod
    def parse(cls, lines: Sequence[str], machine: Optional[int] = None, master_port: int = DEFAULT_MASTER_PORT,
              source: str = "ip_config") -> "Machines":  # fmt: skip
        """From ip_config's lines; ``machine`` None: the line whose address is this machine's."""
        addresses = []
        for number, line in enumerate(lines, 1):
            fields = line.split()  # DGL's format: 'IP PORT' or 'IP' (port 30050), nothing else, no blank lines
            if len(fields) not in (1, 2) or (len(fields) == 2 and not fields[1].isdigit()):
                raise ConfigError(f"{source} line {number}: expected 'IP PORT', got {line.strip()!r}.")
            try:
                socket.inet_aton(fields[0])
            except OSError:
                raise ConfigError(f"{source} line {number}: {fields[0]!r} is not an IPv4 address.") from None
            addresses.append(fields[0])
        if not addresses:
            raise ConfigError(f"{source} names no machine: one 'IP PORT' line per machine.")
        if len(set(addresses)) != len(addresses):
            raise ConfigError(f"{source} names an address twice: DGL tells machines apart by their address.")
        if machine is None:
            mine = [i for i, address in enumerate(addresses) if is_local_address(address)]
            if len(mine) != 1:
                raise ConfigError(
                    f"{'none' if not mine else 'several'} of the addresses in {source} ({', '.join(addresses)}) "
                    f"{'is' if not mine else 'are'} this machine's ({socket.gethostname()}): run the command on each "
                    "machine the file names."
                )
            machine = mine[0]
        if not 0 <= machine < len(addresses):
            raise ConfigError(f"machine {machine}: {source} names {len(addresses)} machine(s).")
        return cls(source, tuple(addresses), machine, master_port)

    @classmethod
    def from_file(cls, path: str, master_port: int = DEFAULT_MASTER_PORT) -> "Machines":
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"cannot read --ip-config {path}: {err.strerror or err}.") from None
        return cls.parse(text.splitlines(), master_port=master_port, source=str(path))


def is_local_address(address: str) -> bool:
    """Whether ``address`` is one of this machine's (a socket can bind to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True
