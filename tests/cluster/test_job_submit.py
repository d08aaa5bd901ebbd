"""``ray job submit`` of the tiny search to the two-node cluster: the job's driver runs on the
head, the supernet's 2 replicas and the trials (1 CPU each: one per node) on both nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cluster.twonode import TwoNodeCluster
from tests.experiment.cli_helpers import TINY, env, wait_for

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster_with_jobs(tmp_path_factory):
    """The two-node cluster with the dashboard's job server on the head."""
    with TwoNodeCluster(tmp_path_factory.mktemp("jobs"), dashboard=True) as c:

        def ready() -> bool:
            probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", c.dashboard_url],
                                   capture_output=True, text=True, env=env())  # fmt: skip
            return probe.returncode == 0

        wait_for(ready, 120, "the head's job server")
        yield c


def test_job_submit_runs_the_search_on_both_nodes(cluster_with_jobs, tmp_path):
    head = cluster_with_jobs.dashboard_url
    storage = tmp_path / "storage"
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "cfg.yaml").write_text(f"experiment: {{name: job, storage: {storage}}}\n")
    sets = []
    for item in [*TINY, "supernet.replicas=2", "supernet.cpus_per_replica=0.5", "search.cpus_per_trial=1",
                 "retrain.cpus_per_trial=1"]:  # fmt: skip
        sets += ["--set", item]
    submit = [str(BIN / "ray"), "job", "submit", "--no-wait", "--address", head, "--working-dir", str(workdir),
              "--submission-id", "raynas-two-nodes", "--", "raynas", "search", "cfg.yaml", *sets]  # fmt: skip
    tries: list = []

    def accepted() -> bool:  # a node's job agent may come up a little after the job server answers
        tries.append(subprocess.run(submit, capture_output=True, text=True, env=env(), timeout=120))
        return tries[-1].returncode == 0

    try:
        wait_for(accepted, 120, "the job to be accepted")
    except AssertionError:
        raise AssertionError(f"not accepted: {tries and (tries[-1].stdout + tries[-1].stderr)[-2000:]}") from None

    def status() -> str:
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from ray.job_submission import JobSubmissionClient as C; "
             "print(C(sys.argv[1]).get_job_status(sys.argv[2]).value)", head, "raynas-two-nodes"],
            capture_output=True, text=True, env=env(), timeout=60,
        )  # fmt: skip
        return probe.stdout.strip()

    final: list = []
    wait_for(lambda: final.append(status()) or final[-1] in ("SUCCEEDED", "FAILED", "STOPPED"), 400, "the job to end")
    logs = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", head, "raynas-two-nodes"],
                          capture_output=True, text=True, env=env())  # fmt: skip
    assert final[-1] == "SUCCEEDED", logs.stdout[-3000:]
    root = storage / "job"
    state = json.loads((root / "state.json").read_text())
    assert state["done"]["supernet"]["replicas"] == 2 and state["done"]["supernet"]["restarts"] == 0
    search = pq.read_table(root / "results" / "search.parquet").to_pylist()
    assert len(search) == len({r["trial_id"] for r in search}) == 6 and all(r["status"] == "ok" for r in search)
    retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert sorted(r["rank"] for r in retrain) == [0, 1] and all(r["status"] == "ok" for r in retrain)
    assert json.loads((root / "best_architecture.json").read_text())


ADDRESS_SCRIPT = """
import json, sys
import ray, torch
from torch import nn
from raynas.nas.darts import DartsTrainer
from raynas.nas.utils import mutable_counting_scope
from tests.models import build_darts, image_data
from tests.nas.test_trainers import acc

torch.manual_seed(0)
with mutable_counting_scope():
    model = build_darts()
optim = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9)
data = image_data()
trainer = DartsTrainer(model, loss=nn.CrossEntropyLoss(), metrics=acc, optimizer=optim, num_epochs=1,
                       dataset_train=data["train"], dataset_valid=data["test"], batch_size=4, workers=0,
                       replicas=2, cpus_per_replica=1, address=sys.argv[1], trace=True)
trainer.train(validate=False)
first, second = trainer.replica_trace
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "nodes": sum(n["Alive"] for n in ray.nodes()),
                  "steps": len(first), "in_step": first == second}))
"""


def test_a_trainer_script_joins_the_cluster_named_by_address(cluster_with_jobs, tmp_path):
    """``DartsTrainer(..., replicas=2, cpus_per_replica=1, address=...)`` in a script of its own: it
    connects to that cluster (not a new local one) and its two 1-CPU replicas fill both nodes."""
    script = tmp_path / "search.py"
    script.write_text(ADDRESS_SCRIPT)
    run = subprocess.run([sys.executable, str(script), cluster_with_jobs.address], capture_output=True, text=True,
                         env=env(), timeout=400, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["gcs"].endswith(f":{cluster_with_jobs.port}") and out["nodes"] == 2
    assert out["steps"] > 0 and out["in_step"]
