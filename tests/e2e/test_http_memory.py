"""The server's memory is bounded by live connections: strangers who upload
a large body and hang up leave nothing behind (measured from /proc)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

BODY = b"{" + b"x" * (1024 * 1024 - 2) + b"}"  # at the 1 MiB limit
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Type: application/x-amz-json-1.1\r\n"
    b"X-Amz-Target: TrentService.Encrypt\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
)
CONNECTIONS = 200


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _round(port: int) -> None:
    """200 connections each upload ~1 MiB (unsigned: refused, and audited),
    read the answer, and close."""
    sockets = []
    for _ in range(CONNECTIONS):
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn.sendall(REQUEST)
        sockets.append(conn)
    for conn in sockets:
        assert conn.recv(12).startswith(b"HTTP/1.1 4")
        conn.close()


@pytest.mark.slow
def test_closed_connections_do_not_keep_their_bodies(fresh_server: Any) -> None:
    """Before the fix each closed connection kept its parser, headers and
    last body (a reference cycle with the parser) until a full collection:
    one round of 200 uploads grew the RSS by ~400 MiB. Now three rounds must
    grow it by less than a quarter of what a single round uploads."""
    server = fresh_server
    pid = server.proc.pid
    _round(server.port)  # warm-up: allocator pools, caches, audit segment
    before = _rss(pid)
    for _ in range(3):
        _round(server.port)
    grown = _rss(pid) - before
    assert grown < CONNECTIONS * len(BODY) // 4, f"RSS grew by {grown >> 20} MiB"
