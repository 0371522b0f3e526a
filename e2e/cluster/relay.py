"""`python -m e2e.cluster.relay`: the API server, reachable from inside the real node's network namespace.

The API server listens on 127.0.0.1 of the host, which no pod and no process inside the node's namespace can
reach. This relay opens its listening sockets *inside* that namespace (it enters it only to create them: a
socket keeps the namespace it was made in) and forwards every connection to the API server on the host's
loopback. It listens on the node's own loopback at the API server's port (the kubelet's kubeconfig is the same
`https://127.0.0.1:<port>` as everyone's) and on the `kubernetes` Service address (10.96.0.1:443), which is what
in-cluster clients read from `KUBERNETES_SERVICE_HOST`; pods route the Service range to the node. Bytes are
copied as they are: TLS is end to end, the API server's certificate names both addresses.

    python -m e2e.cluster.relay --netns /run/netns/NAME --listen 127.0.0.1:6443 --listen 10.96.0.1:443 \
        --to 127.0.0.1:6443
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000
CHUNK = 64 * 1024


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listen_in_netns(netns: str, addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening TCP sockets bound inside the network namespace at path `netns`; the caller's namespace is
    restored before returning (call it before starting any thread: setns changes the calling thread only)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    sockets: list[socket.socket] = []
    try:
        _setns(target)
        try:
            for host, port in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(512)
                sock.setblocking(False)
                sockets.append(sock)
        finally:
            _setns(own)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    finally:
        os.close(own)
        os.close(target)
    return sockets


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


async def serve(sockets: list[socket.socket], target: tuple[str, int]) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))

    servers = [await asyncio.start_server(handle, sock=sock) for sock in sockets]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay: {', '.join(str(s.getsockname()) for s in sockets)} -> {target}", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster.relay", description=__doc__)
    parser.add_argument("--netns", required=True, help="path of the network namespace to listen in")
    parser.add_argument("--listen", action="append", required=True, type=_address, help="HOST:PORT, repeatable")
    parser.add_argument("--to", required=True, type=_address, help="HOST:PORT on the host's loopback")
    args = parser.parse_args(argv)
    if not args.to[0].startswith("127."):
        parser.error("--to must be a loopback address")
    sockets = listen_in_netns(args.netns, args.listen)
    asyncio.run(serve(sockets, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
