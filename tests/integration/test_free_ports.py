"""The ports tests and benchmarks start servers on: free, and outside the kernel's ephemeral range, from which
an outgoing connection could take one before the server binds it."""

from __future__ import annotations

import socket

from shared import infra


def test_free_ports_are_free_and_below_the_ephemeral_range():
    low, _ = infra.ephemeral_ports()
    ports = {infra.free_port() for _ in range(50)}
    assert all(20000 <= port < low for port in ports)
    assert len(ports) > 40  # picked at random, so parallel test workers rarely meet
    for port in ports:
        assert not infra.port_taken(port)


def test_a_listening_port_is_taken():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert infra.port_taken(listener.getsockname()[1])
