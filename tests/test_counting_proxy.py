"""The counting proxy itself: a client that drops its connection is a normal event for a
proxy, and must not print into the output of the command a test is reading.

``socketserver`` prints a traceback to ``sys.stderr`` for every request that raises. While a
CLI command runs under Click's ``CliRunner``, ``sys.stderr`` *is* that command's captured
stderr, so a botocore connection reset in the proxy's thread once became a line of
``flask store verify``'s error output, and CI failed on it.
"""

from __future__ import annotations

import socket
import struct

import click
from click.testing import CliRunner

from tests.counting_proxy import CountingProxy
from tests.waiting import wait_until

#: Nothing listens there: the request below is dropped before the proxy forwards it.
UNREACHED_UPSTREAM = "http://127.0.0.1:9"


def reset_mid_body(proxy: CountingProxy) -> None:
    """Send half a PUT to ``proxy``, then close with a TCP reset (SO_LINGER 0), as a client
    that gives up does."""
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"PUT /bucket/key HTTP/1.1\r\nHost: s3\r\nContent-Length: 100\r\n\r\nab")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_reset_connection_is_recorded_not_printed_into_a_command_output() -> None:
    with CountingProxy(UNREACHED_UPSTREAM) as proxy:

        @click.command()
        def command() -> None:
            reset_mid_body(proxy)
            wait_until(lambda: proxy.dropped, "the proxy to drop the reset connection")
            click.echo("error: s3/key: the only line", err=True)

        result = CliRunner().invoke(command)
    assert result.exit_code == 0, result.output
    assert result.stderr == "error: s3/key: the only line\n"
    assert [type(error) for error in proxy.dropped] == [ConnectionResetError]
    assert proxy.seen == []
