"""The socket mesh Ray's shards trade windows over: every object arrives whole, or it breaks."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raysim.runtime.mesh import Mesh, MeshBroken, make_folder


def _meshes(n: int) -> tuple[list[Mesh], str]:
    """``n`` connected meshes in this process (each shard's side, connected from threads)."""
    folder = make_folder()
    meshes = [Mesh(i, n, folder) for i in range(n)]
    for m in meshes:
        m.listen()
    _all(meshes, lambda m: m.connect())
    return meshes, folder


def _all(meshes: list[Mesh], work: Callable[[Mesh], Any]) -> list[Any]:
    """``work(mesh)`` for every mesh at once, one thread each; their results, or the error."""
    results: list[Any] = [None] * len(meshes)

    def one(i: int) -> None:
        try:
            results[i] = work(meshes[i])
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(meshes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a shard's exchange never finished"
    return results


def test_the_folder_is_private_and_goes_once_connected() -> None:
    meshes, folder = _meshes(2)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert sorted(p.name for p in Path(folder).iterdir()) == ["s0", "s1"]
    meshes[0].drop_folder()
    assert not Path(folder).exists()
    for m in meshes:
        m.close()


def test_every_shard_gets_every_part_meant_for_it_whole() -> None:
    n = 3
    meshes, _ = _meshes(n)
    meshes[0].drop_folder()
    rng = np.random.default_rng(7)
    # parts bigger than a socket's buffer both ways at once, empty arrays, plain objects
    parts = {
        (i, j): {
            "big": rng.integers(0, 1 << 62, size=600_000 + 1000 * i + j),
            "empty": np.empty(0, dtype=np.int64),
            "floats": rng.random(17),
            "meta": ("window", i, j, None),
        }
        for i in range(n)
        for j in range(n)
        if i != j
    }
    for _round in range(3):  # the same sockets serve window after window
        got = _all(meshes, lambda m: m.exchange({j: parts[m.index, j] for j in m.peers}))
        for j, received in enumerate(got):
            assert not isinstance(received, Exception), received
            assert sorted(received) == [i for i in range(n) if i != j]
            for i, obj in received.items():
                sent = parts[i, j]
                assert obj["meta"] == sent["meta"]
                for key in ("big", "empty", "floats"):
                    np.testing.assert_array_equal(obj[key], sent[key])
                    assert obj[key].dtype == sent[key].dtype
    for m in meshes:
        m.close()


def test_a_peer_that_closes_breaks_the_mesh_for_the_others() -> None:
    meshes, _ = _meshes(2)
    meshes[0].drop_folder()
    meshes[1].close()  # shard 1 failed (or died) before sending its window
    with pytest.raises(MeshBroken):
        meshes[0].exchange({1: np.arange(10)})
    meshes[0].close()


def test_a_peer_that_dies_mid_frame_breaks_the_mesh() -> None:
    meshes, _ = _meshes(2)
    meshes[0].drop_folder()
    peer = meshes[1].peers[0]
    peer.setblocking(True)
    peer.sendall((1 << 20).to_bytes(8, "little") + (2).to_bytes(8, "little") + b"partial")
    meshes[1].close()
    with pytest.raises(MeshBroken):
        meshes[0].exchange({1: "window"})
    meshes[0].close()


def test_what_the_c_pickler_cannot_take_travels_by_cloudpickle() -> None:
    from dataclasses import dataclass

    @dataclass
    class Local:  # defined in a function: the C pickler refuses it, cloudpickle takes it
        values: np.ndarray
        note: str

    meshes, _ = _meshes(2)
    meshes[0].drop_folder()
    sent = {m.index: Local(np.arange(5) * (m.index + 1), f"from {m.index}") for m in meshes}
    got = _all(meshes, lambda m: m.exchange({j: sent[m.index] for j in m.peers}))
    for j, received in enumerate(got):
        assert not isinstance(received, Exception), received
        (i, obj), = received.items()
        assert i == 1 - j
        assert obj.note == f"from {i}" and type(obj).__name__ == "Local"
        np.testing.assert_array_equal(obj.values, sent[i].values)
    for m in meshes:
        m.close()


def test_a_cluster_of_several_machines_takes_the_task_path(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raysim.errors import ConfigError
    from raysim.experiments.runner import run
    from raysim.runtime import backends

    from .conftest import make_config

    cfg = make_config(experiment={"protocol": "gossip.push_pull", "duration": 3000},
                      network={"nodes": 40})
    here = run(cfg, tmp_path / "one", backend="ray", shards=2)
    assert (here.status, here.row["transport"]) == ("ok", "mesh")
    monkeypatch.setattr(backends, "_one_machine", lambda: False)
    spread = run(cfg, tmp_path / "many", backend="ray", shards=2)
    assert (spread.status, spread.row["transport"]) == ("ok", "tasks")
    with pytest.raises(ConfigError, match="spans several machines"):
        run(cfg, tmp_path / "asked", backend="ray", shards=2, transport="mesh")
    assert not list((tmp_path / "asked").rglob("*.parquet"))  # nothing written


def test_a_long_temporary_directory_falls_back_to_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    folder = make_folder()
    assert folder.startswith("/tmp/raysim-mesh-")
    meshes = [Mesh(i, 2, folder) for i in range(2)]
    for m in meshes:
        m.listen()  # the socket names fit
    _all(meshes, lambda m: m.connect())
    meshes[0].drop_folder()
    for m in meshes:
        m.close()


def test_a_shard_waiting_on_a_slow_peer_keeps_calling_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from raysim.runtime import mesh as mesh_module

    monkeypatch.setattr(mesh_module, "IDLE_S", 0.02)
    meshes, _ = _meshes(2)
    meshes[0].drop_folder()
    calls: list[float] = []

    def work(m: Mesh) -> Any:
        if m.index == 1:
            time.sleep(0.5)  # still in its window
            return m.exchange({0: "late"})
        return m.exchange({1: "early"}, idle=lambda: calls.append(time.monotonic()))

    got = _all(meshes, work)
    assert got == [{1: "late"}, {0: "early"}]
    assert len(calls) >= 5  # it looked up while it waited, not only once at the end
    for m in meshes:
        m.close()
