"""A local Ray that raysim starts listens on the loopback address only and keeps token auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, sys, psutil, ray
from raysim.runtime.backends import ensure_ray
ensure_ray()

@ray.remote(num_cpus=0)
class Probe:
    def ping(self):
        return os.getpid()

ray.get(Probe.remote().ping.remote())  # a worker and an actor are up

@ray.remote(num_cpus=0)
def part(n):
    return b"x" * n

# where a window's part lives: in the task's reply (no node holds it) or in the object store
refs = [part.remote(n) for n in (200_000, 600_000)]
ray.get(refs)
where = [bool(v["node_ids"]) for v in ray.experimental.get_object_locations(refs).values()]
me = psutil.Process()
listen = set()
for p in [me, *me.children(recursive=True)]:
    try:
        listen |= {c.laddr.ip for c in p.net_connections(kind="inet")
                   if c.status == psutil.CONN_LISTEN}
    except psutil.Error:
        pass
print(json.dumps({"listen": sorted(listen), "auth": os.environ.get("RAY_AUTH_MODE"),
                  "in_store": where}))
ray.shutdown()
"""


def test_a_local_ray_binds_loopback_only_and_keeps_auth() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    # NOTE: a short path: Ray's socket paths under it must stay below 108 bytes.
    env["RAYSIM_RAY_TMP"] = os.environ.get("RAYSIM_TEST_RAY_TMP", "/tmp/raysim-test-ray") + "-lo"
    p = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert seen["listen"], "no listening socket found: the probe saw nothing"
    assert set(seen["listen"]) <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, seen
    assert seen["auth"] != "disabled"  # raysim did not turn Ray's token auth off
    assert "Token authentication is enabled" in p.stderr  # Ray's own notice is not hidden
    # A 200 kB task result travels inline (raysim's limit, INLINE_BYTES; Ray's own is 100
    # KiB), a 600 kB one through the object store.
    assert seen["in_store"] == [False, True], seen
