"""Where every rank runs (host, addresses, pid), so that a collective that fails because a peer
died can say which rank was lost instead of only "Connection reset by peer".

gloo reports a lost peer by its socket address (``Read error [10.77.0.2]:40123: Connection reset
by peer``), NCCL by host name in some messages; neither says which rank. Each rank records its
own host and addresses once, at startup, and every rank gets the whole list in one
``all_gather_object``: after a failure the peers can no longer be asked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket

# Messages by which gloo and NCCL report that the other side of a connection went away.
_LOST_PEER = re.compile(
    r"Connection (reset|closed) by peer|Broken pipe|Connection refused|Socket Timeout|Timed out waiting|"
    r"remote process exited|NCCL communicator was aborted|Connection was likely closed|Failed to recv",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\]:\d+")


@dataclasses.dataclass(frozen=True)
class Peer:
    rank: int
    host: str
    pid: int
    addresses: tuple[str, ...]

    def describe(self) -> str:
        return f"rank {self.rank} (host {self.host}, pid {self.pid})"


def this_peer(rank: int) -> Peer:
    """This process as its peers should know it: its host name and every address it resolves to."""
    host = socket.gethostname()
    addresses: set[str] = set()
    try:
        addresses.update(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError:  # a host name nothing resolves: the name alone still identifies it
        pass
    return Peer(rank=rank, host=host, pid=os.getpid(), addresses=tuple(sorted(_plain(a) for a in addresses)))


def _plain(address: str) -> str:
    """``::ffff:10.0.0.2`` -> ``10.0.0.2`` (an IPv4 peer seen on a dual-stack socket)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_lost_peer_error(error: BaseException) -> bool:
    """True for the errors a collective raises when a rank it talks to died or stopped answering."""
    return isinstance(error, RuntimeError) and bool(_LOST_PEER.search(str(error)))


def lost_peers(message: str, peers: list[Peer], my_rank: int) -> list[Peer]:
    """The peers a backend's error ``message`` points at: by the addresses in it, else by host name.
    A loopback address means "a rank on my host". Empty when the message names none of them."""
    me = next((p for p in peers if p.rank == my_rank), None)
    others = [p for p in peers if p.rank != my_rank]
    found: list[Peer] = []
    for address in (_plain(a) for a in _ADDRESS.findall(message)):
        if is_loopback(address) and me is not None:
            found += [p for p in others if p.host == me.host]
        else:
            found += [p for p in others if address in p.addresses]
    if not found:
        found = [p for p in others if p.host and re.search(rf"\b{re.escape(p.host)}\b", message)]
    return sorted(set(found), key=lambda p: p.rank)


def describe_lost_peer(error: BaseException, peers: list[Peer], my_rank: int, timeout_minutes: float) -> str:
    """One paragraph for the log: which rank this one lost, and what the backend said."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    first_line = re.sub(r"^\[[^\]]*\.(cc|cpp|hpp):\d+\]\s*", "", first_line)  # gloo's source location
    first_line = re.sub(r"\.?\s*This is typically caused by.*$", "", first_line)  # gloo's generic advice
    me = next((p.describe() for p in peers if p.rank == my_rank), f"rank {my_rank}")
    lost = lost_peers(str(error), peers, my_rank)
    if lost:
        who = "lost " + ", ".join(p.describe() for p in lost)
    else:
        who = (f"a collective failed: some rank died or stopped answering (a rank that hangs is given up on "
               f"after engine.timeout_minutes={timeout_minutes:g})")
    return f"{me}: {who}: {first_line}"


def layout(peers: list[Peer]) -> str:
    """``node1 (rank 0), node2 (ranks 1-2)``: which ranks each host runs, in rank order."""
    hosts: dict[str, list[int]] = {}
    for p in sorted(peers, key=lambda p: p.rank):
        hosts.setdefault(p.host, []).append(p.rank)
    parts = []
    for host, ranks in hosts.items():
        span = str(ranks[0]) if len(ranks) == 1 else (
            f"{ranks[0]}-{ranks[-1]}" if ranks == list(range(ranks[0], ranks[-1] + 1)) else ",".join(map(str, ranks)))
        parts.append(f"{host} (rank{'s' if len(ranks) > 1 else ''} {span})")
    return ", ".join(parts)
