"""Whether a server can listen on an address and port, asked before a process starts serving.

Every long-running command (worker, sink, collector, webhooks) checks its web or HTTP port with
:func:`listen_problem` before it starts anything, so a port that is taken is one line naming the
setting to change (``leadflow: ...``, exit 2), not a traceback from deep inside a web server.
The check binds a socket the way aiohttp does (``SO_REUSEADDR``) and closes it at once; a process
that takes the port between the check and the real bind still fails, with the same message from
the command's own handler.
"""

from __future__ import annotations

import errno
import socket


def listen_problem(bind: str, port: int) -> str | None:
    """``None`` when a TCP server can listen on ``bind:port``; else why not, in a few words."""
    try:
        infos = socket.getaddrinfo(bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {bind}:{port}: unknown address ({getattr(exc, 'strerror', None) or exc})"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                return bind_error(bind, port, exc)
    return None


def bind_error(bind: str, port: int, exc: OSError) -> str:
    """The words for a failed bind of ``bind:port``."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {bind} is already in use by another process"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {bind}:{port} (a port below 1024 needs privileges)"
    return f"cannot listen on {bind}:{port} ({exc.strerror or exc})"
