"""Run the app under uvicorn: the socket, the access log, and a SIGTERM that drains and exits 0."""

from __future__ import annotations

import signal

import uvicorn
from fastapi import FastAPI


def serve_forever(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, access_log: bool = True, drain_timeout_s: float = 30.0) -> None:
    """Serve until SIGTERM or Ctrl-C. On SIGTERM uvicorn stops accepting connections, lets the requests in
    flight finish (at most ``drain_timeout_s``), runs the app's shutdown, and this function returns.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=access_log,
        timeout_graceful_shutdown=drain_timeout_s,
        log_level="info",
    )
    # uvicorn re-raises the signal it caught once it has shut down, with the handler that was installed
    # before it started: with the default one a drained SIGTERM would end the process as killed by SIGTERM
    # (exit -15). A handler that does nothing makes a drained stop what it is: a clean exit.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
