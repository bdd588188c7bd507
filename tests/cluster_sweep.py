"""Run a sweep on a Ray cluster of N nodes started here; print the cluster's node ids as JSON.

Used by tests/test_cluster.py in a subprocess (one process can hold only one Ray session,
and the test session's is shared): ``python -m tests.cluster_sweep EXP.toml OUT [N]``
(N = 2 by default: a head and N - 1 worker nodes, 1 CPU each).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray keeps this cluster's sessions (and its "current cluster" address file) under
# $RAY_TMPDIR/ray: a fresh folder, so nothing leaks into /tmp/ray or other sessions.
os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rs-cl-", dir="/tmp")
os.makedirs(os.path.join(os.environ["RAY_TMPDIR"], "ray"), exist_ok=True)


def main(experiment: str, out: str, n_nodes: int = 2) -> int:
    """Start a head and ``n_nodes - 1`` worker nodes (1 CPU each), sweep on them with one
    run per node in flight, shut everything down."""
    import ray
    from ray.cluster_utils import Cluster

    from raysim.experiments import sweep
    from raysim.experiments.sweep_exec import run_sweep

    store = 100 * 1024**2
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": store, "include_dashboard": False,
    })
    try:
        for _ in range(n_nodes - 1):
            cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR")
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        summary = run_sweep(sweep.plan(experiment), out, address=cluster.address,
                                  max_parallel=n_nodes, progress=False)
        print(json.dumps({"nodes": nodes, "exit_code": summary.exit_code,
                          "summary": summary.describe()}))
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4])))
