"""The clock protocols and causal broadcast, driven without the engine, checked by analysis."""

from __future__ import annotations

from typing import Any

import pytest

from raysim.analysis import causality as rcz
from raysim.errors import ConfigError
from raysim.experiments.config import validate
from raysim.protocols.causality.broadcast import BroadcastParams, CausalBroadcast
from raysim.protocols.causality.lamport import LamportNode
from raysim.protocols.causality.traffic import TrafficParams
from raysim.protocols.causality.vector import VectorNode
from raysim.values.clocks import LamportClock
from raysim.values.rng import mix64
from tests.causality_sim import simulate

SCRIPT = [
    {"at": 10, "node": 0, "do": "local"},
    {"at": 20, "node": 0, "do": "send", "to": 1},
    {"at": 22, "node": 1, "do": "local"},
    {"at": 30, "node": 1, "do": "send", "to": 2},
    {"at": 32, "node": 2, "do": "local"},
    {"at": 40, "node": 2, "do": "send", "to": 0},
]


class ForgetfulLamport(LamportNode):
    """A student's Lamport clock that forgets the max on receive: ``clock + 1``."""

    def receive(self, ts: int) -> LamportClock:
        return self.clock.tick()


def _jitter(src: int, dst: int, mid: int) -> int:
    return 5 + mix64(mid) % 60


def test_scripted_lamport_run_stamps_the_textbook_values() -> None:
    params = TrafficParams(script=SCRIPT)
    log = simulate(lambda i: LamportNode(params, i), 3, until=100)
    obs = log[log["kind"] == "obs"]
    got = [(int(r.node), int(r.time), int(r.value)) for r in obs.itertuples()]
    # P0: local 1, send 2; P1: local 1, receive max(1,2)+1 = 3, send 4; P2: local 1,
    # receive max(1,4)+1 = 5, send 6; P0 receives: max(2,6)+1 = 7.
    assert got == [(0, 10, 1), (0, 20, 2), (1, 22, 1), (1, 25, 3), (1, 30, 4), (2, 32, 1),
                   (2, 35, 5), (2, 40, 6), (0, 45, 7)]
    assert rcz.check_clock_condition(log, "lamport") is None


def test_lamport_stamps_attach_to_the_send_and_deliver_rows() -> None:
    params = TrafficParams(script=SCRIPT)
    log = simulate(lambda i: LamportNode(params, i), 3, until=100)
    hb = rcz.happens_before(log)
    st = rcz.stamped_events(hb, "lamport")
    kinds = hb.events["kind"].to_numpy()[st["event"].to_numpy()].tolist()
    assert sorted(kinds) == ["deliver"] * 3 + ["obs"] * 3 + ["send"] * 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_lamport_traffic_satisfies_the_clock_condition(seed: int) -> None:
    params = TrafficParams(interval=20, until=400, send_prob=0.6)
    log = simulate(lambda i: LamportNode(params, i), 5, until=1000,
                   delay=lambda s, d, m: 1 + mix64(m ^ seed) % 80)
    assert (log["kind"] == "send").sum() > 20
    assert rcz.check_clock_condition(log, "lamport") is None


def test_clock_check_catches_a_lamport_clock_that_forgets_the_max() -> None:
    params = TrafficParams(interval=20, until=400, send_prob=0.6)
    log = simulate(lambda i: ForgetfulLamport(params, i), 5, until=1000, delay=_jitter)
    v = rcz.check_clock_condition(log, "lamport")
    assert v is not None
    hb = rcz.happens_before(log)
    assert hb.before(v.a, v.b) and v.a_clock >= v.b_clock
    assert hb.events["kind"].iloc[v.b] == "deliver"  # broken at a receive


def test_vector_protocol_satisfies_the_strong_clock_condition() -> None:
    params = TrafficParams(interval=20, until=300, send_prob=0.6)
    log = simulate(lambda i: VectorNode(params, i), 4, until=1000, delay=_jitter)
    assert rcz.check_clock_condition(log, "vclock", kind="vector") is None
    stamps = log[log["name"] == "vclock"]
    assert len(stamps) > 20 and all(len(v) == 4 for v in stamps["value"])


def _broadcast(policy: str, seed: int) -> Any:
    params = BroadcastParams(policy=policy, interval=30, until=600)  # type: ignore[arg-type]
    return simulate(lambda i: CausalBroadcast(params, i), 5, until=5000,
                    delay=lambda s, d, m: 1 + mix64(m ^ (seed << 40)) % 150)


@pytest.mark.parametrize("seed", [0, 1])
def test_apply_on_arrival_violates_causal_order_and_causal_delivery_does_not(seed: int) -> None:
    arrival = _broadcast("arrival", seed)
    causal = _broadcast("causal", seed)
    assert len(rcz.causal_order_violations(arrival)) > 0
    assert rcz.causal_order_violations(causal).empty
    # Loss-free: every operation is applied at every other node, under both policies.
    for log in (arrival, causal):
        ops = (log["name"] == "broadcast").sum()
        assert (log["name"] == "apply").sum() == ops * 4


def _cfg(protocol: dict[str, Any]) -> Any:
    return validate(
        {
            "experiment": {"name": "t", "protocol": "clocks.lamport", "duration": 100},
            "protocol": protocol,
            "network": {"nodes": 3, "delay": 5},
        },
        "exp.toml",
    )


def test_a_script_is_validated_with_one_clear_line() -> None:
    cfg = _cfg({"script": SCRIPT})
    assert cfg.protocol["script"][1] == {"at": 20, "node": 0, "do": "send", "to": 1}
    cases = {
        "protocol.script.0.do": [{"at": 1, "node": 0, "do": "jump"}],
        "a send needs a destination": [{"at": 1, "node": 0, "do": "send"}],
        "cannot send to itself": [{"at": 1, "node": 1, "do": "send", "to": 1}],
        "script.0.to: 7 is not below network.nodes (3)": [
            {"at": 1, "node": 0, "do": "send", "to": 7}
        ],
        "protocol.script.0.at: required field is missing": [{"when": 1, "node": 0, "do": "local"}],
    }
    for fragment, script in cases.items():
        with pytest.raises(ConfigError) as err:
            _cfg({"script": script})
        msg = str(err.value)
        assert fragment in msg and "\n" not in msg and msg.startswith("exp.toml: ")


def test_clock_safety_lists_every_broken_event_of_a_forgetful_clock() -> None:
    from raysim.analysis.causality import columns
    from raysim.protocols.causality import oracle

    params = TrafficParams(interval=20, until=400, send_prob=0.6)
    good = simulate(lambda i: LamportNode(params, i), 5, until=1000, delay=_jitter)
    assert oracle.clock_safety(columns(good), "lamport", "value") == []
    bad = simulate(lambda i: ForgetfulLamport(params, i), 5, until=1000, delay=_jitter)
    found = oracle.clock_safety(columns(bad), "lamport", "value")
    first = rcz.check_clock_condition(bad, "lamport")
    assert first is not None and len(found) > 1
    time, nodes, detail = found[0]
    assert time == int(rcz.happens_before(bad).events["time"].iat[first.b])
    assert detail.startswith(f"event {first.a_label} ") and f"→ {first.b_label} " in detail
    assert [t for t, _, _ in found] == sorted(t for t, _, _ in found)
    # The first breach is at a receive, where a forgetful clock goes wrong; later events of
    # that node inherit the error.
    hb = rcz.happens_before(bad)
    assert hb.events["kind"].iat[first.b] == "deliver"
    assert nodes[1] == hb.events["node"].iat[first.b]
