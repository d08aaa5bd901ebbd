"""`ray job submit` of a tiny search to a real `ray start --head` cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import free_port
from tests.experiment.cli_helpers import TINY, env, kill_group, wait_for

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
#: how long each wait may take; together well inside the 600 s per-test timeout
HEAD_S, SUBMIT_S, JOB_S = 90, 120, 330  # (+ one 30 s status probe, teardown)


@pytest.fixture
def head(tmp_path):
    """A Ray head in its own temp dir, ports and process group; ended by that group's id."""
    temp = Path("/tmp") / f"rn{os.getpid()}"  # Ray's socket paths must stay short
    port, dashboard = free_port(), free_port()
    # the job agent's ports too: another Ray on this machine (a test's ray.init) may hold the defaults,
    # and the job server then answers "No available agent to submit job" until the test times out
    agent_ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
    log = open(tmp_path / "head.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp}", f"--port={port}",
         f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--num-cpus=2", "--include-dashboard=true",
         *agent_ports],
        stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"

    def ready() -> bool:
        probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address],
                               capture_output=True, text=True, env=env())
        return probe.returncode == 0

    try:
        wait_for(ready, HEAD_S, "the Ray head's job server", proc)
        yield address
    finally:
        kill_group(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_job_submit_runs_the_search_on_the_cluster(head, tmp_path):
    storage = tmp_path / "storage"
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "cfg.yaml").write_text(
        f"experiment: {{name: job, storage: {storage}}}\n"
    )
    sets = []
    for item in [*TINY, "retrain.scheduler=asha", "retrain.grace_period=1", "retrain.epochs=3"]:
        sets += ["--set", item]
    submit_cmd = [str(BIN / "ray"), "job", "submit", "--no-wait", "--address", head, "--working-dir", str(workdir),
                  "--submission-id", "raynas-tiny", "--", "raynas", "search", "cfg.yaml", *sets]
    submitted: list = []

    def submit() -> bool:  # the job agent may come up a little after the job server answers
        result = subprocess.run(submit_cmd, capture_output=True, text=True, env=env(), timeout=SUBMIT_S)
        submitted.append(result)
        return result.returncode == 0

    try:
        wait_for(submit, SUBMIT_S, "the job to be accepted")
    except AssertionError:
        last = submitted[-1] if submitted else None
        raise AssertionError(f"the job was not accepted: {last and (last.stdout + last.stderr)[-2000:]}") from None

    def status() -> str:
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from ray.job_submission import JobSubmissionClient as C; "
             "print(C(sys.argv[1]).get_job_status(sys.argv[2]).value)", head, "raynas-tiny"],
            capture_output=True, text=True, env=env(), timeout=30,
        )
        return probe.stdout.strip()

    final: list = []
    wait_for(lambda: final.append(status()) or final[-1] in ("SUCCEEDED", "FAILED", "STOPPED"), JOB_S, "the job to end")
    logs = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", head, "raynas-tiny"],
                          capture_output=True, text=True, env=env())
    assert final[-1] == "SUCCEEDED", logs.stdout[-3000:]
    root = storage / "job"
    assert pq.read_table(root / "results" / "search.parquet").num_rows == 6
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(retrain) == 2  # ASHA may stop the weaker one early (tests/experiment/test_asha.py checks the rule)
    assert {r["status"] for r in retrain} <= {"ok", "stopped"} and any(r["status"] == "ok" for r in retrain)
    assert json.loads((root / "best_architecture.json").read_text())
    assert (root / "tune_search").is_dir()
