"""A real two-node Ray cluster on this machine, made by the tests themselves.

``ray start --head`` plus a second ``ray start --address=...`` raylet, each with its own CPUs and a
custom resource naming it (``{"node_a": 1}`` on the head, ``{"node_b": 1}`` on the worker) so a test
can force placement. Each node runs in its own session (``start_new_session``) with its own
temp dir and free ports for everything it listens on, and is ended by killing that session, never by
``ray stop`` (which would end every other Ray cluster on the machine). :meth:`TwoNodeCluster.kill_worker`
is a lost machine: SIGKILL of the worker node's session (its raylet and every worker process on it).

Reuse it with a module-scoped fixture (one cluster per module keeps CI time small; the ``cluster``
fixture of ``tests/cluster/conftest.py`` also connects the test process as the driver)::

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        with TwoNodeCluster(tmp_path_factory.mktemp("cluster")) as c:
            yield c

A test that kills the worker leaves it to ``tests/cluster/conftest.py``'s ``cluster`` fixture to call
:meth:`TwoNodeCluster.start_worker` before the module's next test (or uses its own cluster).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TwoNodeCluster", "free_port", "free_port_range", "kill_session"]

BIN = Path(sys.executable).parent
#: fast node-death detection: a killed node is marked dead within ~2 s instead of ~30 s
FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4, "health_check_timeout_ms": 500}


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def free_port_range(size: int, tries: int = 200) -> tuple[int, int]:
    """``(first, last)`` of ``size`` consecutive ports that are all free right now (worker ports)."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(tries):
        first = rng.randrange(20000, 60000 - size)
        held = []
        try:
            for port in range(first, first + size):
                s = socket.socket()
                held.append(s)
                s.bind(("", port))
            return first, first + size - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {size} consecutive free ports found")


def _session_pids(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``, read from ``/proc``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def kill_session(proc: subprocess.Popen, wait_s: float = 30.0) -> None:
    """SIGKILL every process of the session ``proc`` leads (started with ``start_new_session``)
    and wait until all of them are gone.

    The whole session, not only ``proc``'s process group: Ray starts each worker process in a
    process group of its own, and a worker that outlived its killed raylet would go on running
    user code for a while (a lost machine loses all of its processes at once).
    """
    deadline = time.monotonic() + wait_s
    while pids := _session_pids(proc.pid) + ([proc.pid] if proc.poll() is None else []):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {pids} of the killed session {proc.pid} did not exit")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    proc.wait()


def _env() -> dict[str, str]:
    """The nodes' environment: this checkout first on the Python path (the workers import raynas
    and tests), this interpreter's scripts first on ``PATH``."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(BIN), env.get("PATH")) if p)  # `raynas` of a job's entrypoint
    env["PYTHONUNBUFFERED"] = "1"
    return env


def use_token_auth() -> None:
    """Token authentication in this process and the nodes it starts (as a Ray 2.59+ cluster has by
    default; ``RAY_AUTH_MODE=disabled`` set by the caller is respected): makes the token if there is
    none yet, sets ``RAY_AUTH_MODE=token`` and refreshes this process's Ray config."""
    from ray._private.authentication import authentication_token_setup as auth

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    if not auth._get_default_token_path().is_file():
        auth.generate_and_save_token()
    auth._enable_token_auth()


class TwoNodeCluster:
    """A head node and a worker node (``ray start --block``), each in its own session.

    Args:
        root: a folder for the nodes' logs (their Ray temp dirs go under ``/tmp``: socket paths
            must stay short).
        head_cpus: the head's CPUs.
        worker_cpus: the worker's CPUs.
        dashboard: start the dashboard and job server on the head (for ``ray job submit``).
        worker: start the worker node too (``False``: a one-node cluster of the head alone).
        system_config: Ray system settings of the cluster (default: fast node-death detection).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        head_cpus: int = 1,
        worker_cpus: int = 1,
        dashboard: bool = False,
        worker: bool = True,
        system_config: Mapping[str, Any] | None = None,
    ):
        self.root = Path(root)
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.dashboard = dashboard
        self.worker = worker
        self.system_config = dict(FAST_HEALTH if system_config is None else system_config)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_port = free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        tag = f"{os.getpid()}{random.Random().randrange(10**6)}"
        self.temp = {"head": Path(f"/tmp/rh{tag}"), "worker": Path(f"/tmp/rw{tag}")}
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> TwoNodeCluster:
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the head, then the worker; return once both are alive."""
        use_token_auth()
        self._start("head")
        self.wait_nodes(1, timeout_s)
        if self.worker:
            self.start_worker(timeout_s)

    def start_worker(self, timeout_s: float = 120.0) -> None:
        """Start (or restart) the worker node; return once the cluster has two alive nodes."""
        old = self.procs.get("worker")
        if old is not None and old.poll() is None:
            raise RuntimeError("the worker node is running")
        self._start("worker")
        self.wait_nodes(2, timeout_s)

    def kill_worker(self, wait_dead_s: float = 60.0) -> None:
        """SIGKILL the worker node's session (a lost machine); wait until the cluster has
        marked it dead."""
        kill_session(self.procs["worker"])
        deadline = time.monotonic() + wait_dead_s
        while time.monotonic() < deadline:
            if len(self.alive_nodes()) == 1:
                return
            time.sleep(0.2)
        raise AssertionError(f"the killed worker node still counts as alive after {wait_dead_s} s")

    def shutdown(self) -> None:
        """Kill both nodes' sessions and remove their temp dirs (safe to call twice)."""
        for name in ("worker", "head"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                kill_session(proc)
        for f in self._logs:
            f.close()
        self._logs = []
        for temp in self.temp.values():
            shutil.rmtree(temp, ignore_errors=True)

    # -- state --------------------------------------------------------------------------------

    def alive_nodes(self) -> list[dict[str, Any]]:
        """The alive nodes: ``{"node_id", "resources"}`` each (asks the GCS; no driver needed)."""
        from ray._raylet import GcsClient

        try:
            client = GcsClient(address=self.address)
            infos = client.get_all_node_info(timeout=5)
        except Exception:  # noqa: BLE001 - a GCS still starting answers nothing yet
            return []
        out = []
        for node_id, info in infos.items():
            if info.state == 0:  # ALIVE
                out.append({"node_id": node_id.hex(), "resources": dict(info.resources_total)})
        return out

    def wait_nodes(self, n: int, timeout_s: float) -> None:
        """Wait until ``n`` nodes are alive (a node process that ends early fails at once)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"the {name} node ended (code {proc.returncode}): {self.log_tail(name)}")
            if len(self.alive_nodes()) >= n:
                return
            time.sleep(0.3)
        raise AssertionError(f"the cluster did not reach {n} alive nodes in {timeout_s} s: {self.log_tail('head')}")

    def log_tail(self, name: str, chars: int = 2000) -> str:
        """The end of a node's ``ray start`` output."""
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else ""

    # -- internals ----------------------------------------------------------------------------

    def _ports(self, name: str) -> list[str]:
        first, last = free_port_range(16)
        args = [
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--min-worker-port={first}",
            f"--max-worker-port={last}",
        ]
        if name == "head":
            args += [f"--port={self.port}", f"--ray-client-server-port={free_port()}"]
        return args

    def _start(self, name: str) -> None:
        temp = self.temp[name]
        shutil.rmtree(temp, ignore_errors=True)
        cpus = self.head_cpus if name == "head" else self.worker_cpus
        resource = "node_a" if name == "head" else "node_b"
        cmd = [
            str(BIN / "ray"), "start", "--block", f"--temp-dir={temp}", f"--num-cpus={cpus}", "--num-gpus=0",
            f"--resources={json.dumps({resource: 1})}", "--object-store-memory=100000000",
            "--node-ip-address=127.0.0.1", "--disable-usage-stats", *self._ports(name),
        ]  # fmt: skip
        if name == "head":
            cmd += ["--head", f"--system-config={json.dumps(self.system_config)}"]
            if self.dashboard:
                cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
            else:
                cmd += ["--include-dashboard=false"]
        else:
            cmd += [f"--address={self.address}"]
        log = open(self.root / f"{name}.log", "a")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
