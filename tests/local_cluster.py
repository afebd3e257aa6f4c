"""A throwaway Ray cluster for tests: scripts/local-cluster.sh with a fresh token and free ports.

Each cluster gets its own temp dir, its own random auth token and ports the OS picked free,
so it clashes neither with a user's head (6379/8265), nor with the `ray.init` of the other
integration tests, nor with a second test run on the same machine. It is stopped by the
script's `stop`, which ends exactly the processes its `start` began, even when the test fails.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "local-cluster.sh"
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")


@dataclass(frozen=True)
class LocalCluster:
    address: str
    """The head's GCS, for `trial run --address`."""
    dashboard_url: str
    """The job API, for `ray job submit --address`."""
    env: dict[str, str]
    """What a client needs: token auth on with this cluster's token, this venv first on PATH."""

    def node_ids(self) -> set[str]:
        """The ids of the nodes the head counts as active (`ray status`)."""
        status = subprocess.run(
            [RAY, "status", f"--address={self.address}"],
            env=self.env, capture_output=True, text=True, check=False, timeout=60,
        )
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return set(re.findall(r"node_([0-9a-f]{56})", active))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def local_cluster(*, extra_nodes: int = 1, cpus_per_node: int = 1) -> Iterator[LocalCluster]:
    """A head and `extra_nodes` more nodes on this machine, stopped on exit."""
    # Short, under /tmp: Ray's socket paths below it must stay under 108 characters.
    directory = Path(tempfile.mkdtemp(prefix="trial-rc-", dir="/tmp" if os.path.isdir("/tmp") else None))
    token = directory / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    gcs_port, dashboard_port, client_port = _free_ports(3)
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    # The nodes' `python` (a job's entrypoint) is this venv's, like their `ray`.
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
    )
    script_env = {
        **env,
        "RAY": RAY,
        "LOCAL_CLUSTER_DIR": str(directory),
        "RAY_PORT": str(gcs_port),
        "RAY_DASHBOARD_PORT": str(dashboard_port),
        "RAY_CLIENT_PORT": str(client_port),
        "RAY_NODE_CPUS": str(cpus_per_node),
        "RAY_EXTRA_NODES": str(extra_nodes),
    }
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start"], env=script_env, capture_output=True, text=True, check=False, timeout=300
        )
        if started.returncode != 0:
            raise RuntimeError(f"local cluster did not start:\n{started.stdout[-2000:]}\n{started.stderr[-3000:]}")
        yield LocalCluster(
            address=f"127.0.0.1:{gcs_port}", dashboard_url=f"http://127.0.0.1:{dashboard_port}", env=env
        )
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=script_env, capture_output=True, check=False, timeout=180)
        shutil.rmtree(directory, ignore_errors=True)
