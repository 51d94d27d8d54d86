"""Socket send buffers for large answers to a peer on the same host.

A production gunicorn usually answers a reverse proxy on the same machine (nginx, Caddy),
over loopback. For a large file sent with ``sendfile``, Linux grows the socket's send buffer
up to ``net.ipv4.tcp_wmem``'s maximum (4 MiB by default): the kernel then copies megabytes
into the buffer before the receiver copies them out, and by then they have left the CPU's
cache. A send buffer capped at :data:`LOOPBACK_SEND_BUFFER` keeps each piece in cache between
the two copies: on this project's machines a 64 MiB download over loopback took 25–45% less
time, a 1 GiB one about 25% less (BENCHMARKS.md, "Large downloads").

Over a network the growing buffer is what keeps a long round trip full (a fixed 512 KiB
would cap a 50 ms path near 10 MB/s), so a peer that is not on loopback is left alone.

Only gunicorn tells the application its socket (``environ["gunicorn.socket"]``); under
other servers nothing changes.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["LOOPBACK_SEND_BUFFER", "cap_for_loopback_peer", "is_loopback_address"]

#: ``SO_SNDBUF`` asked for on loopback connections; Linux doubles it for its bookkeeping,
#: so about 512 KiB are in flight. 128 KiB to 512 KiB measured alike; above that the gain
#: fades, and below it the sender wakes up too often.
LOOPBACK_SEND_BUFFER = 256 * 1024

#: The environ key under which gunicorn hands the application the client's socket.
GUNICORN_SOCKET = "gunicorn.socket"


def cap_for_loopback_peer(environ: Mapping[str, Any]) -> bool:
    """Cap the send buffer of the request's socket when its peer is on this host.

    For answers large enough to be sent with ``sendfile``; costs two system calls. (The
    buffer's current size says nothing: auto-tuning has not grown it yet when the answer
    starts, and setting it is what stops the growth.)

    :returns: whether the buffer was capped (``False`` without a socket, for a Unix socket,
        a remote peer, or a socket that refuses the option).
    """
    sock = environ.get(GUNICORN_SOCKET)
    if not isinstance(sock, socket.socket) or sock.family not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return False
    try:
        if not is_loopback_address(sock.getpeername()[0]):
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LOOPBACK_SEND_BUFFER)
    except OSError:  # closed by the peer meanwhile, or an option this platform lacks
        return False
    return True


def is_loopback_address(host: str) -> bool:
    """Whether ``host`` (a peer address as ``getpeername`` gives it) is on this machine's
    loopback: ``127.0.0.0/8``, ``::1``, or IPv4 loopback mapped into IPv6."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
