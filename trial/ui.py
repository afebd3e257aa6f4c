"""`trial ui`: MLflow's own server and UI over a sweep's store, bound to 127.0.0.1.

The server is `mlflow server` in a child process (its own process group, so Ctrl-C
reaches `trial` alone and `trial` stops the whole group: mlflow's launcher and the
uvicorn worker it spawns). `running_server` is the same thing as a context manager,
for tests and scripts: it yields the base URL once `GET /health` answers.

Artifacts: a run's artifact URI is fixed when the run is created; MLflow's client,
given a sqlite store, writes them under `./mlruns` of the process that created the
experiment, which for a sweep run with the default store is the folder holding
`mlflow.db`. The server lists and downloads a run's artifacts from that URI whatever
its flags, so existing runs are always browsable; `--default-artifact-root` and
`--artifacts-destination` (the store's `mlruns` folder, trial/runs.py's artifact_root)
only decide where experiments and proxied uploads created through the server go, and
keep them beside the rest.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from trial.errors import UserError
from trial.runs import artifact_root, file_store_path, is_file_store, is_remote, sqlite_database, sqlite_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
STARTUP_TIMEOUT_S = 120.0
"""How long to wait for `GET /health`; mlflow server takes ~7 s on an idle 2-core machine."""
STOP_TIMEOUT_S = 10.0
"""How long the server gets to exit after SIGTERM before it is killed."""

class ServerError(RuntimeError):
    """`mlflow server` exited or never answered `GET /health`; the message holds its output's tail."""


# -- the command ------------------------------------------------------------------


def store_uri(uri: str) -> str:
    """The store as the server should open it: a sqlite path made absolute, checked to exist.

    A sqlite store that does not exist is an error rather than a new empty store:
    `trial ui` run in the wrong folder should say so, not show an empty UI.
    """
    if is_remote(uri):
        raise UserError(f"--tracking-uri: {uri} is already an MLflow server; open it in a browser instead")
    database = sqlite_database(uri)
    if database is not None:
        if not database.is_file():
            raise UserError(
                f"--tracking-uri: no MLflow store at {database}; run a sweep first, run `trial ui` in the folder "
                "holding mlflow.db, or pass --tracking-uri sqlite:////path/to/mlflow.db"
            )
        _, sep, query = uri.partition("?")
        return f"{sqlite_uri(database)}{sep}{query}"
    if is_file_store(uri):  # MLflow's file store: a folder
        path = file_store_path(uri)
        if not path.is_dir():
            raise UserError(f"--tracking-uri: no MLflow store folder at {path}")
        return path.as_uri()
    return uri  # another database (postgresql://, mysql://, ...): the server reports what it cannot open


def server_command(uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The `mlflow server` command line that serves the store `uri` on host:port."""
    store = store_uri(uri)
    artifacts = artifact_root(store)
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store,
        "--default-artifact-root", artifacts,
        "--artifacts-destination", artifacts,
        "--host", host,
        "--port", str(port),
        # One person browsing one store: MLflow's default of 4 uvicorn workers is 4 copies of mlflow in memory.
        "--workers", "1",
    ]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def warn_if_exposed(host: str, port: int) -> None:
    """A bind address other than loopback opens the store to the network: say so once."""
    if not is_loopback(host):
        warnings.warn(
            f"--host {host} opens the MLflow UI to the network: anyone who can reach port {port} can read and "
            "change every run (MLflow's server has no login); use 127.0.0.1 to keep it on this machine",
            stacklevel=2,
        )


def browser_url(host: str, port: int) -> str:
    """The URL to open on this machine (a wildcard bind is reached through loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port free on `host` right now (another process may still take it before the server does)."""
    return _bind(host, 0)


def _bind(host: str, port: int) -> int:
    """Check that the server could listen on host:port; returns the port (the one picked, for 0)."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 1 and 65535 (or 0: a free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn does: a port left in TIME_WAIT by a server just stopped is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(
                    f"--port {port}: {host}:{port} is already in use (another MLflow UI?); open that one, "
                    "or pick another port (--port 0 picks a free one)"
                ) from None
            raise UserError(f"--host {host}: cannot listen there ({error.strerror or error})") from None
        return sock.getsockname()[1]


# -- the process ------------------------------------------------------------------


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # MLflow's job runner (a huey consumer process) runs GenAI evaluation jobs; a sweep's
    # store has none, so it only costs a process. A user's own setting wins.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def _start(command: Sequence[str], output: IO[bytes] | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(command),
        env=_server_env(),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=os.name == "posix",
    )


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the server's process group, then SIGKILL if it is not gone in `timeout` s."""
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        _send(process, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None and not _group_alive(process):
                return
            time.sleep(0.1)
    process.wait()


def _send(process: subprocess.Popen[bytes], sig: int) -> None:
    if os.name != "posix":
        if process.poll() is None:
            process.terminate() if sig == signal.SIGTERM else process.kill()
        return
    try:
        os.killpg(process.pid, sig)  # the group _start created: mlflow's launcher and its uvicorn
    except ProcessLookupError:
        pass


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    if os.name != "posix":
        return False
    try:
        os.killpg(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never route 127.0.0.1 via $http_proxy


def _healthy(base_url: str) -> bool:
    try:
        with _NO_PROXY.open(f"{base_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_healthy(
    process: subprocess.Popen[bytes], base_url: str, timeout: float = STARTUP_TIMEOUT_S, log: Path | None = None
) -> None:
    """Return once `GET /health` answers; raise ServerError if the server exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServerError(f"mlflow server exited with code {code} before it answered {base_url}/health{_tail(log)}")
        if _healthy(base_url):
            return
        if time.monotonic() > deadline:
            raise ServerError(f"mlflow server did not answer {base_url}/health within {timeout:.0f} s{_tail(log)}")
        time.sleep(0.25)


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None:
        return "; its output is above"
    if not log.is_file():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return ("; its output ends:\n" + "\n".join(text)) if text else ""


@contextmanager
def running_server(
    uri: str, host: str = DEFAULT_HOST, port: int = 0, *, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[str]:
    """Serve the store `uri` for the duration of the block; yields the base URL (no trailing slash).

    `port=0` picks a free port. The server's output goes to a temporary log whose tail
    is in the ServerError raised when it does not start; the server is stopped (and its
    log removed) on leaving the block, however the block ends.
    """
    port = port or free_port(host)
    command = server_command(uri, host, port)
    base_url = browser_url(host, port)
    with tempfile.TemporaryDirectory(prefix="trial-ui-") as folder:
        log = Path(folder) / "mlflow-server.log"
        with log.open("wb") as output:
            process = _start(command, output)
            try:
                wait_until_healthy(process, base_url, timeout, log)
                yield base_url
            finally:
                stop(process)


def serve(uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, timeout: float = STARTUP_TIMEOUT_S) -> int:
    """`trial ui`: start the server, print its URL, run until Ctrl-C (then return exit code 0).

    The server's own output goes to the terminal, as `mlflow server`'s would. `port=0`
    picks a free port.
    """
    store = store_uri(uri)  # a missing store fails before anything starts
    port = _bind(host, port)
    warn_if_exposed(host, port)
    base_url = browser_url(host, port)
    process = _start(server_command(uri, host, port), None)
    # A SIGTERM (a supervisor, `kill`) stops the server too, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        wait_until_healthy(process, base_url, timeout)
        # A database URI may hold a password: only file stores are named.
        shown = store if store.startswith(("sqlite:", "file:")) else "--tracking-uri"
        print(f"MLflow UI: {base_url}  (store {shown}; Ctrl-C stops it)", flush=True)
        print(
            "A sweep's runs are under Model training (top of MLflow's sidebar); "
            f"or open {base_url}/#/experiments/<id>/runs",
            flush=True,
        )
        code = process.wait()
        raise ServerError(f"mlflow server stopped on its own with exit code {code}; its output is above")
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
