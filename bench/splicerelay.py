#!/usr/bin/env python3
"""The least work a relay between two unix sockets can do, as a yardstick for bench/relay.py.

    python bench/splicerelay.py LISTEN UPSTREAM

Each direction of each connection is a thread that moves bytes with splice(2): from the socket
into a pipe and from the pipe into the other socket, so the bytes never enter user space and
Python runs once per megabyte, not once per byte. Half-close is passed on; nothing is parsed
or recorded. No relay that reads the bytes (as docktap must, to record them) can beat it on
bulk transfers, so the benchmark's "splice floor" path shows what any relay costs on this
machine, apart from what docktap does. It is no product: no error answers, no flow control
beyond the kernel's own, one thread per direction.

It prints "listening on LISTEN" on stderr once it accepts connections, and exits on SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading

CHUNK = 1 << 20


def pump(src: socket.socket, dst: socket.socket) -> None:
    """src -> dst until src's EOF (passed on as a write shutdown) or an error."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, CHUNK)  # a megabyte per splice
    try:
        while moved := os.splice(src.fileno(), write_end, CHUNK):
            while moved:
                moved -= os.splice(read_end, dst.fileno(), moved)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)
    finally:
        os.close(read_end)
        os.close(write_end)


def serve(client: socket.socket, upstream: str) -> None:
    with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as daemon:
        try:
            daemon.connect(upstream)
        except OSError:
            return
        back = threading.Thread(target=pump, args=(daemon, client), daemon=True)
        back.start()
        pump(client, daemon)
        back.join()


def main() -> None:
    listen, upstream = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(listen)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen)
    server.listen(socket.SOMAXCONN)
    print(f"listening on {listen}", file=sys.stderr, flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
