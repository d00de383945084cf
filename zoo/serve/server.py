"""Running the API: `serve` (blocking, what `zoo serve` calls) and `ServerThread` (uvicorn in a
background thread on a free port, for tests, benchmarks and notebooks)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from typing import Any

import uvicorn

from ..compiler.errors import UsageError
from .app import create_app
from .engine import Engine

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_args(host: str, port: int, max_batch: int) -> None:
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {port!r}")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise UsageError(f"--max-batch must be >= 1, got {max_batch!r}")
    if not host:
        raise UsageError("--host must be an address or a host name")


def check_bind(host: str, port: int) -> None:
    """UsageError when `host:port` cannot be listened on (in use, or not an address here)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def build(model: Any, name: str, max_batch: int = 16, aliases: tuple[str, ...] = ()) -> tuple[Any, Engine]:
    """(FastAPI app, started Engine) serving `model` under `name`."""
    engine = Engine(model, max_batch=max_batch).start()
    spec_name = getattr(getattr(model, "spec", None), "name", None)
    extra = tuple(a for a in (*aliases, spec_name) if a and a != name)
    return create_app(engine, name, extra), engine


def serve(model: Any, name: str, host: str = LOOPBACK, port: int = 8000, max_batch: int = 16,
          log_level: str = "info") -> None:
    """Serve `model` until interrupted. Loopback only unless `host` says otherwise (then warn:
    the API has no authentication)."""
    check_args(host, port, max_batch)
    check_bind(host, port)
    if not is_loopback(host):
        print(f"warning: --host {host} makes the API reachable from other machines; it has no authentication",
              file=sys.stderr)
    app, engine = build(model, name, max_batch)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        engine.close()


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """`with ServerThread(model, "tiny-code") as srv:` … `srv.base_url` is http://127.0.0.1:PORT/v1."""

    def __init__(self, model: Any, name: str, max_batch: int = 16, host: str = LOOPBACK, port: int | None = None):
        check_args(host, port or 0, max_batch)
        self.app, self.engine = build(model, name, max_batch)
        self.host, self.port = host, port or free_port(host)
        config = uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="zoo-serve-http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
