"""gandist.engine.peers: a backend's "connection reset" turned into the rank that was lost."""

from __future__ import annotations

import os
import socket

from gandist.engine.peers import (
    Peer,
    describe_lost_peer,
    is_lost_peer_error,
    layout,
    lost_peers,
    this_peer,
)

PEERS = [
    Peer(0, "node1", 100, ("10.77.0.1",)),
    Peer(1, "node1", 101, ("10.77.0.1",)),
    Peer(2, "node2", 200, ("10.77.0.2",)),
    Peer(3, "node2", 201, ("10.77.0.2",)),
]
GLOO_RESET = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [{addr}]:27055: Connection reset "
              "by peer. This is typically caused by a remote worker hanging or bugs in the application. GLHF!")


def test_an_address_in_the_message_names_the_ranks_on_that_host():
    msg = GLOO_RESET.format(addr="10.77.0.2")
    assert [p.rank for p in lost_peers(msg, PEERS, my_rank=0)] == [2, 3]
    # An IPv4 peer seen on a dual-stack socket is the same host.
    assert [p.rank for p in lost_peers(GLOO_RESET.format(addr="::ffff:10.77.0.2"), PEERS, my_rank=0)] == [2, 3]


def test_a_loopback_address_means_the_other_ranks_on_my_host():
    assert [p.rank for p in lost_peers(GLOO_RESET.format(addr="127.0.0.1"), PEERS, my_rank=0)] == [1]
    assert [p.rank for p in lost_peers(GLOO_RESET.format(addr="127.0.0.1"), PEERS, my_rank=3)] == [2]


def test_a_host_name_names_its_ranks_when_no_address_matches():
    assert [p.rank for p in lost_peers("NCCL error: remote process exited on node2", PEERS, my_rank=0)] == [2, 3]
    assert lost_peers("Connection reset by peer [10.9.9.9]:1", PEERS, my_rank=0) == []


def test_the_message_names_both_sides_without_the_backend_boilerplate():
    text = describe_lost_peer(RuntimeError(GLOO_RESET.format(addr="10.77.0.2")), PEERS, 1, timeout_minutes=5)
    assert text == ("rank 1 (host node1, pid 101): lost rank 2 (host node2, pid 200), rank 3 (host node2, pid 201): "
                    "Read error [10.77.0.2]:27055: Connection reset by peer")
    unknown = describe_lost_peer(RuntimeError("Timed out waiting 120000ms for recv operation to complete"), PEERS, 0, 2)
    assert "some rank died or stopped answering" in unknown and "engine.timeout_minutes=2" in unknown


def test_only_peer_failures_count():
    assert is_lost_peer_error(RuntimeError(GLOO_RESET.format(addr="10.0.0.1")))
    assert is_lost_peer_error(RuntimeError("[c10d] Timed out waiting 1800000ms for recv operation to complete"))
    assert not is_lost_peer_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"))
    assert not is_lost_peer_error(ValueError("Connection reset by peer"))  # not what a collective raises


def test_layout_groups_ranks_by_host():
    assert layout(PEERS) == "node1 (ranks 0-1), node2 (ranks 2-3)"
    assert layout([PEERS[0], PEERS[2]]) == "node1 (rank 0), node2 (rank 2)"


def test_this_peer_is_this_process():
    me = this_peer(5)
    assert (me.rank, me.host, me.pid) == (5, socket.gethostname(), os.getpid())
