"""The causality part of ``raysim report``: diagrams, classified pairs, clock checks, and
causal-order violations of causal broadcast against jitter.

:func:`report_parts` is the report section of the clock protocols (``clocks.*``) and of
causal broadcast (``causal.broadcast*``), named by their ``report`` attribute;
:func:`diagram_section` is the space-time diagram of the smallest run, which the report
shows for any results directory whose smallest run is small enough to read
(:data:`DIAGRAM_MAX_NODES`, :data:`DIAGRAM_MAX_EVENTS`).
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
import pyarrow.dataset as ds

from raysim.analysis import causality as rcz
from raysim.analysis import diagram as dg
from raysim.analysis.figures import PALETTE
from raysim.analysis.load import Where, load_events
from raysim.analysis.section import Part
from raysim.analysis.stats import summarize

DIAGRAM_MAX_NODES = 30
DIAGRAM_MAX_EVENTS = 3000
PAIRS_MAX_EVENTS = 60  # the classified-pairs table is shown for runs this small
CLOCK_PROTOCOLS = ("clocks.",)
BROADCAST_PROTOCOLS = ("causal.broadcast",)
JITTER = "network.jitter"
POLICY = "protocol.policy"


def run_events(where: Where, run_id: str) -> pd.DataFrame:
    """Every row of one run's log (for the small runs this module analyses)."""
    return load_events(where, filter=ds.field("run_id") == run_id, run_ids=[run_id],
                       runs=pd.DataFrame({"run_id": [run_id]}))


def causal_violations(where: Where, runs: pd.DataFrame) -> pd.DataFrame:
    """Per causal-broadcast run: ``violations`` (applications before a causal predecessor,
    from :func:`raysim.analysis.causal_order_violations`) and ``applied``, joined to the
    run's parameters."""
    rows = []
    for r in runs.itertuples(index=False):
        rid = str(r.run_id)
        log = run_events(where, rid)
        v = rcz.causal_order_violations(log)
        applied = int(((log["kind"] == "obs") & (log["name"] == "apply")).sum())
        rows.append({"run_id": rid, "violations": len(v), "applied": applied})
    out = pd.DataFrame(rows, columns=["run_id", "violations", "applied"])
    # NOTE: a runs table may have a ``violations`` column of its own (the safety checks'
    # first violations, as JSON text); the count computed here replaces it.
    return runs.drop(columns=["violations", "applied"], errors="ignore").merge(out, on="run_id")


def fig_causal_violations(per_run: pd.DataFrame) -> go.Figure:
    """Causal-order violations per run against jitter, one line (mean, 95 % band) per policy."""
    by = [c for c in (POLICY, JITTER) if c in per_run]
    s = summarize(per_run, by, ["violations"])
    fig = go.Figure()
    policies = sorted(s[POLICY].unique()) if POLICY in s else [None]
    for i, pol in enumerate(policies):
        g = s[s[POLICY] == pol] if pol is not None else s
        g = g.sort_values(JITTER)
        color = PALETTE[i % len(PALETTE)]
        name = {"arrival": "apply on arrival (Algorithm 3)",
                "causal": "causal delivery (hold back)"}.get(str(pol), str(pol))
        fig.add_trace(go.Scatter(
            x=g[JITTER], y=g["mean"], mode="lines+markers", name=name,
            line={"color": color},
            error_y={"type": "data", "symmetric": False, "array": g["hi"] - g["mean"],
                     "arrayminus": g["mean"] - g["lo"], "color": color},
        ))
    fig.update_layout(
        title="Causal-order violations per run against network jitter",
        xaxis_title="jitter (extra delay uniform in 0..J ticks)",
        yaxis_title="operations applied before a causal predecessor",
        template="plotly_white", height=420,
    )
    return fig


def _smallest(runs: pd.DataFrame) -> pd.Series | None:
    if not len(runs) or "events_logged" not in runs:
        return None
    return runs.sort_values(["events_logged", "run_id"], kind="stable").iloc[0]


def diagram_section(where: Where, runs: pd.DataFrame, div_id: str = "fig-diagram") -> str:
    """The space-time diagram of the smallest run, if it is small enough (else "")."""
    row = _smallest(runs)
    if row is None:
        return ""
    nodes = int(row.get("network.nodes", row.get("nodes", 0)))
    if nodes > DIAGRAM_MAX_NODES or int(row["events_logged"]) > DIAGRAM_MAX_EVENTS:
        return ""
    data = dg.load_diagram(where, str(row["run_id"]))
    if not len(data.events):
        return ""
    fig, graph = dg.build_figure(data)
    return (
        "<h2>Space-time diagram</h2>"
        f"<p class=\"note\">Run <code>{html.escape(str(row['run_id']))}</code> (the smallest "
        "of this directory): one line per node, messages as arrows, lost ones ending in a "
        "cross. Hover an event for its time, kind, message and clocks; click it to highlight "
        "its causal past (blue) and future (orange); double-click to clear. "
        "<code>raysim diagram</code> draws any run, or some of its nodes and times.</p>"
        + dg.fragment(fig, graph, div_id)
    )


def classified_stamps(hb: rcz.HappensBefore, stamped: pd.DataFrame) -> pd.DataFrame:
    """Every pair of the protocol-clocked events, named ``P<node>.<k>``, with their clocks."""
    ev = hb.events
    ids = stamped["event"].to_numpy()
    node = ev["node"].to_numpy()[ids]
    k = pd.Series(node).groupby(node).cumcount().to_numpy() + 1
    names = {int(e): f"P{n}.{j}" for e, n, j in zip(ids, node, k, strict=True)}
    what = {"send": "send", "deliver": "receive"}
    kinds = {int(e): what.get(str(ev["kind"].iat[int(e)]), "local") for e in ids}
    clocks = {int(e): dg._fmt_value(c) for e, c in zip(ids, stamped["clock"], strict=True)}
    pairs = hb.classify_pairs(ids)
    return pd.DataFrame({
        "a": [names[a] for a in pairs["a"]],
        "a: kind": [kinds[a] for a in pairs["a"]],
        "a: time": pairs["a_time"],
        "C(a)": [clocks[a] for a in pairs["a"]],
        "relation": pairs["relation"],
        "b": [names[b] for b in pairs["b"]],
        "b: kind": [kinds[b] for b in pairs["b"]],
        "b: time": pairs["b_time"],
        "C(b)": [clocks[b] for b in pairs["b"]],
    })


def _clock_parts(where: Where, runs: pd.DataFrame) -> list[Part]:
    row = _smallest(runs)
    if row is None:
        return []
    rid = str(row["run_id"])
    hb = rcz.happens_before(run_events(where, rid))
    name, kind = ("vclock", "vector") if str(row["protocol"]) == "clocks.vector" else (
        "lamport", "lamport")
    v = rcz.check_clock_condition(hb, name, kind)  # type: ignore[arg-type]
    verdict = ("every pair of stamped events satisfies the clock condition"
               + (" and the strong condition (a → b ⇔ V(a) < V(b))" if kind == "vector" else "")
               if v is None else f"violated: {v.describe()}")
    stats = rcz.lamport_disagreement(hb)
    out = [Part(
        "Clock conditions",
        f"Run {rid} (the smallest): the protocol's own {name} observations, checked against "
        f"the log's happens-before graph: {verdict}. Over all {int(stats['pairs'])} pairs of "
        "events, Lamport times computed on the graph (Algorithm 5) order "
        f"{stats['realtime_disagree']:.1%} of the pairs at distinct times against real time; "
        f"{stats['concurrent']:.1%} of the pairs are concurrent, and Lamport gives "
        f"{stats['concurrent_ordered']:.1%} of those distinct times (an order that causality "
        "does not imply).",
    )]
    stamped = rcz.stamped_events(hb, name)
    if 0 < len(stamped) <= PAIRS_MAX_EVENTS:
        pairs = classified_stamps(hb, stamped)
        counts = pairs["relation"].value_counts()
        out.append(Part(
            f"Every pair of the {len(stamped)} clocked events, classified",
            f"→ {int(counts.get(rcz.BEFORE, 0))}, ← {int(counts.get(rcz.AFTER, 0))}, "
            f"∥ {int(counts.get(rcz.CONCURRENT, 0))}. P1.3 is the third clocked event (local, "
            "send or receive) of node 1; the relation is the log's happens-before, the clocks "
            "are the protocol's.",
            table=pairs,
        ))
    return out


def _broadcast_parts(where: Where, runs: pd.DataFrame) -> list[Part]:
    per_run = causal_violations(where, runs)
    note = ("An application of an operation is a violation if the node had not yet applied "
            "every operation that causally precedes it (found from the log alone: program "
            "order, and an edge from each send to the application of what it carried).")
    by = [c for c in (POLICY, JITTER) if c in per_run]
    table = (per_run.groupby(by)["violations"].agg(["mean", "min", "max", "count"])
             .reset_index() if by else per_run[["run_id", "applied", "violations"]])
    fig = (fig_causal_violations(per_run)
           if JITTER in per_run and per_run[JITTER].nunique() > 1 else None)
    return [Part("Causal broadcast: causal-order violations", note, figure=fig, table=table,
                 figure_id="fig-causal-violations")]


def report_parts(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The causality section of the report (the protocols' ``report`` hook): clock checks
    and classified pairs for ``clocks.*`` runs, violations against jitter for causal
    broadcast."""
    proto = runs["protocol"].astype(str)
    out: list[Part] = []
    clocks = runs[proto.str.startswith(CLOCK_PROTOCOLS)].reset_index(drop=True)
    bcast = runs[proto.str.startswith(BROADCAST_PROTOCOLS)].reset_index(drop=True)
    if len(clocks):
        out += _clock_parts(where, clocks)
    if len(bcast):
        out += _broadcast_parts(where, bcast)
    return out


__all__ = ["causal_violations", "diagram_section", "fig_causal_violations", "report_parts"]
