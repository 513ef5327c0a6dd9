"""Where this process runs, as lease holders and events name it."""

from __future__ import annotations

import socket
import sys


def node_name() -> str:
    """Where this process runs: ``hostname/IP/Ray node id`` inside Ray, else the hostname."""
    host = socket.gethostname()
    if "ray" not in sys.modules:
        return host
    import ray

    if not ray.is_initialized():
        return host
    try:
        ip = ray.util.get_node_ip_address()
        node = ray.get_runtime_context().get_node_id()
    except Exception:  # not in a worker of a live cluster: the hostname is all we know
        return host
    return f"{host}/{ip}/{node}"[:200]
