"""Space-time (Lamport) diagrams of a run: one timeline per node, messages as arrows.

Theory of operation
-------------------
The diagram everyone draws on a whiteboard (Lamport 1978, Fig. 1), drawn from the event
log: time runs left to right, each node is a horizontal line, every event a mark on it
(send ▶, deliver ●, timer ◆, observation ·, start, crash ✕, recover, join, leave), and every
message an arrow from its send to its delivery. A message the network lost, partitioned away
or corrupted, or that arrived at a crashed node, is an arrow ending in a red cross; a
duplicated message's extra delivery is a ringed mark on a dotted arrow. Messages to or from
nodes that are not shown go to or come from a lane "other nodes". Hovering a mark shows its
time, kind, message type, clocks (the engine's ``lamport``/``vclock`` columns, or the
protocol's own ``lamport``/``vclock`` observations) and observation value; clicking it
highlights its causal past (blue) and future (orange) among the events shown, computed in
the page by walking the happens-before graph of :mod:`raysim.analysis.causality` (program
order and message edges), so the page stays small; double-clicking clears it.

Large logs are read through ``pyarrow.dataset`` with the run, the nodes and the time window
pushed down as filters, plus one column-pruned pass over the run's sends for the arrows that
come from nodes not shown: drawing 20 nodes of a 10⁵-node run reads a small part of the log.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow.dataset as ds
from plotly.offline import get_plotlyjs

from raysim.analysis import causality as rcz
from raysim.analysis.load import Where, events_dataset, load_runs
from raysim.errors import ConfigError

MARKS: dict[str, tuple[str, str, int]] = {  # kind: (symbol, colour, size)
    "start": ("line-ns-open", "#7f7f7f", 10),
    "send": ("triangle-right", "#1f77b4", 10),
    "deliver": ("circle", "#2ca02c", 9),
    "timer": ("diamond", "#9467bd", 8),
    "obs": ("circle", "#8c564b", 5),
    "crash": ("x", "#d62728", 12),
    "recover": ("star", "#17becf", 11),
    "join": ("triangle-up", "#bcbd22", 11),
    "leave": ("triangle-down", "#e377c2", 11),
}
PAST, FUTURE, CHOSEN, DIM = "#1f4fd8", "#ff7f0e", "#d62728", "#d0d0d0"
MAX_ANNOTATED = 400  # arrows drawn with arrowheads; beyond this, plain lines
MAX_LABELLED = 300  # events labelled with their clock; beyond this, hover only
COLUMNS = ("time", "kind", "node", "peer", "msg_id", "msg_type", "name", "value")
OPTIONAL = ("seq", "cause", "value_type", "value_int", "value_str", "value_vec", "lamport",
            "vclock")


def parse_nodes(spec: str) -> list[int]:
    """``"0-9,17"`` → ``[0, 1, …, 9, 17]``; ValueError naming the bad part."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad node range {part!r}: expected N or N-M, e.g. 0-9,17")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad node range {part!r}: the end is below the start")
        out.update(range(lo, hi + 1))
    return sorted(out)


def pick_run(where: Where, run_id: str | None = None) -> pd.Series:
    """The runs-table row of ``run_id``, or of the ok run with the fewest logged events."""
    runs = load_runs(where)
    if not len(runs):
        raise ConfigError(f"{where}: no successful runs to draw")
    if run_id is not None:
        hit = runs[runs["run_id"] == run_id]
        if not len(hit):
            raise ConfigError(
                f"--run {run_id}: no such ok run in {where}; runs: "
                + ", ".join(sorted(runs["run_id"].astype(str))[:10])
            )
        return hit.iloc[0]
    order = runs.sort_values(["events_logged", "run_id"], kind="stable")
    return order.iloc[0]


@dataclass(frozen=True)
class DiagramData:
    """What a diagram is drawn from: the events shown and the sends from other nodes."""

    run_id: str
    nodes: list[int]
    events: pd.DataFrame
    incoming: pd.DataFrame  # sends from nodes not shown to nodes shown: time, node, msg_id
    n_nodes: int


def load_diagram(
    where: Where,
    run_id: str | None = None,
    nodes: Sequence[int] | None = None,
    t_from: int | None = None,
    t_to: int | None = None,
) -> DiagramData:
    """Read the rows a diagram needs, with run, nodes and time window pushed down."""
    row = pick_run(where, run_id)
    rid = str(row["run_id"])
    n_nodes = int(row.get("network.nodes", row.get("nodes", 0)))
    dataset = events_dataset(where)
    if dataset is None:
        raise ConfigError(f"{where}: this results directory has no event log")
    names = set(dataset.schema.names)
    cols = [*COLUMNS, *(c for c in OPTIONAL if c in names)]
    expr = ds.field("run_id") == rid
    if t_from is not None:
        expr = expr & (ds.field("time") >= t_from)
    if t_to is not None:
        expr = expr & (ds.field("time") <= t_to)
    base = expr
    if nodes is not None:
        expr = expr & ds.field("node").isin(list(nodes))
    events = dataset.to_table(columns=cols, filter=expr).to_pandas()
    for c in ("kind", "msg_type", "name"):
        events[c] = events[c].astype(object).where(events[c].notna(), None)
    shown = sorted(set(events["node"].tolist())) if nodes is None else sorted(nodes)
    incoming = pd.DataFrame(columns=["time", "node", "msg_id"])
    if nodes is not None:
        # NOTE: integer columns only, and no filter on the dictionary column ``kind``: this
        # pass reads every row of the run, and decoding strings would double its cost.
        flt = base & ds.field("peer").isin(list(nodes)) & ~ds.field("node").isin(list(nodes))
        rows = dataset.to_table(columns=["time", "node", "msg_id"], filter=flt).to_pandas()
        at_sender = (rows["msg_id"].to_numpy() >> 32) == rows["node"].to_numpy()
        incoming = rows[at_sender].drop_duplicates("msg_id").reset_index(drop=True)
    return DiagramData(rid, shown, events, incoming, n_nodes)


def _num(v: Any) -> float:
    """A float from a log value (0 where missing)."""
    return 0.0 if v is None or pd.isna(v) else float(v)


def _obs_value(r: Any) -> Any:
    """An observation row's value, from its typed column where the log has one."""
    typed = {"vec": "value_vec", "str": "value_str", "int": "value_int", "bool": "value_int"}
    col = typed.get(str(getattr(r, "value_type", None)))
    return getattr(r, col) if col is not None and hasattr(r, col) else r.value


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(str(int(x)) for x in v) + "]"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _clock_texts(hb: rcz.HappensBefore) -> list[str]:
    """Per event, the clocks known for it: the engine's columns, or the protocol's stamps."""
    ev = hb.events
    out = [""] * len(ev)
    for c in ("lamport", "vclock"):
        if c in ev:
            vals = ev[c].tolist()
            for i, v in enumerate(vals):
                if v is not None and not (isinstance(v, float) and np.isnan(v)):
                    out[i] += f"<br>{c} (engine): {_fmt_value(v)}"
    if "name" in ev:
        for name in ("lamport", "vclock"):
            if (ev["name"] == name).any():
                st = rcz.stamped_events(hb, name)
                for e, c in zip(st["event"].tolist(), st["clock"].tolist(), strict=True):
                    out[e] += f"<br>{name} (protocol): {_fmt_value(c)}"
    return out


def _clock_labels(hb: rcz.HappensBefore) -> list[str] | None:
    """Per event, the short clock label drawn above it (None if the run has no clocks)."""
    ev = hb.events
    out = [""] * len(ev)
    found = False
    for c in ("lamport", "vclock"):
        if c in ev:
            for i, v in enumerate(ev[c].tolist()):
                if v is not None and not (isinstance(v, float) and np.isnan(v)):
                    out[i] = _fmt_value(v)
                    found = True
            if found:  # (a run without [log] causality reads these columns as null)
                return out
    for name in ("vclock", "lamport"):
        if "name" in ev and (ev["name"] == name).any():
            st = rcz.stamped_events(hb, name)
            for e, c in zip(st["event"], st["clock"], strict=True):
                out[int(e)] = _fmt_value(c)  # stamps attached to a send or deliver row
            return out
    return None


def _hover(hb: rcz.HappensBefore) -> list[str]:
    ev = hb.events
    clocks = _clock_texts(hb)
    texts = []
    rows: list[Any] = list(ev.itertuples(index=False))
    for i, r in enumerate(rows):
        t = f"<b>{r.kind}</b> at node {r.node}, t = {r.time}<br>event {hb.events['label'].iat[i]}"
        if r.msg_type is not None and r.kind in ("send", "deliver", "timer"):
            t += f"<br>{'tag' if r.kind == 'timer' else 'message'}: {html.escape(str(r.msg_type))}"
        if r.kind in ("send", "deliver") and r.peer >= 0:
            t += f"<br>{'to' if r.kind == 'send' else 'from'} node {r.peer}, msg {r.msg_id}"
        if r.kind == "obs":
            t += f"<br>{html.escape(str(r.name))} = {html.escape(_fmt_value(_obs_value(r)))}"
        texts.append(t + clocks[i])
    return texts


def _spread_x(ev: pd.DataFrame, span: float) -> np.ndarray:
    """Event times, nudged apart where one node has several events in the same tick."""
    k = ev.groupby(["node", "time"]).cumcount().to_numpy()
    return ev["time"].to_numpy(dtype=np.float64) + k * max(span, 1.0) / 150.0


def build_figure(data: DiagramData, title: str = "") -> tuple[go.Figure, dict[str, Any]]:
    """The diagram as a plotly figure, and the graph the page's click handler walks."""
    hb = rcz.happens_before(data.events)
    ev = hb.events
    lanes = {n: i for i, n in enumerate(data.nodes)}
    other = len(data.nodes)
    tmin = float(ev["time"].min()) if len(ev) else 0.0
    tmax = float(ev["time"].max()) if len(ev) else 1.0
    x = _spread_x(ev, tmax - tmin)
    y = ev["node"].map(lanes).to_numpy()
    kinds = ev["kind"].tolist()
    colors = [MARKS[k][1] for k in kinds]
    mid = ev["msg_id"].to_numpy()
    parent = ev["parent"].to_numpy()
    fig = go.Figure()
    segs: dict[str, list[tuple[float, float, float, float]]] = {
        "delivered": [],
        "duplicate": [],
        "dropped": [],
        "others": [],
    }
    # Delivered messages between shown nodes (a duplicate's later copy is dotted).
    deliver_idx = np.flatnonzero((ev["kind"] == "deliver").to_numpy())
    seen_mid: set[int] = set()
    dup_marks: list[int] = []
    xl: list[float] = [float(v) for v in x]
    yl: list[float] = [float(v) for v in y]
    val: list[Any] = ev["value"].tolist()
    for e in deliver_idx.tolist():
        p = int(parent[e])
        dup = int(mid[e]) in seen_mid
        seen_mid.add(int(mid[e]))
        if dup:
            dup_marks.append(e)
        if p >= 0:
            segs["duplicate" if dup else "delivered"].append((xl[p], yl[p], xl[e], yl[e]))
    # Sends from shown nodes to nodes not shown, and arrivals from nodes not shown.
    is_send = (ev["kind"] == "send").to_numpy()
    send_at = {int(m): int(i) for i, m in zip(np.flatnonzero(is_send), mid[is_send], strict=True)}
    peer = ev["peer"].to_numpy()
    outward = np.flatnonzero(is_send & ~np.isin(peer, data.nodes))
    for i in outward.tolist():
        segs["others"].append((xl[i], yl[i], xl[i] + _num(val[i]), other))
    inc: dict[int, float] = dict(
        zip(data.incoming["msg_id"].astype(int).tolist(),
            data.incoming["time"].astype(float).tolist(), strict=True)
    )
    for e in deliver_idx.tolist():
        if parent[e] < 0 and int(mid[e]) in inc:
            segs["others"].append((inc[int(mid[e])], other, xl[e], yl[e]))
    # Messages that never arrived: network drops at the sender, crashed drops and corrupt
    # copies at the receiver.
    drops = data.events[data.events["kind"].isin(["drop", "corrupt"])]
    crosses: list[tuple[float, float, str]] = []
    delays = [_num(val[i]) for i in np.flatnonzero(is_send).tolist() if _num(val[i]) > 0]
    typical = float(np.median(delays)) if delays else max(tmax - tmin, 1.0) / 20
    rows: list[Any] = list(drops.itertuples(index=False))
    for r in rows:
        m, node, t = int(r.msg_id), int(r.node), float(r.time)
        s = send_at.get(m)
        if r.kind == "drop" and r.name in ("loss", "partition"):
            if node not in lanes:
                continue
            # NOTE: a lost message has no delay; its arrow stops half-way, in transit.
            x0, y0 = (xl[s] if s is not None else t), float(lanes[node])
            x1 = x0 + typical / 2
            y1 = (y0 + float(lanes.get(int(r.peer), other))) / 2
            segs["dropped"].append((x0, y0, x1, y1))
            crosses.append((x1, y1, f"{r.name}: msg {m} from node {node}"))
        elif node in lanes:
            x0, y0 = (xl[s], yl[s]) if s is not None else (t, float(other))
            segs["dropped"].append((x0, y0, t, float(lanes[node])))
            why = r.name if r.kind == "drop" else "corrupt"
            crosses.append((t, float(lanes[node]), f"{why}: msg {m} at node {node}"))
    n_arrows = sum(len(v) for v in segs.values())
    styles = {
        "delivered": ("#555555", "solid", "messages"),
        "duplicate": ("#555555", "dot", "duplicate copies"),
        "dropped": ("#d62728", "dash", "messages not delivered"),
        "others": ("#aaaaaa", "solid", "to/from other nodes"),
    }
    annotations = []
    for key, lines in segs.items():
        if not lines:
            continue
        color, dash, label = styles[key]
        xs: list[float | None] = []
        ys: list[float | None] = []
        for x0, y0, x1, y1 in lines:
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, hoverinfo="skip",
                                 line={"color": color, "width": 1, "dash": dash}))
        if n_arrows <= MAX_ANNOTATED:
            for x0, y0, x1, y1 in lines:
                annotations.append(dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y",
                                        axref="x", ayref="y", showarrow=True, arrowhead=2,
                                        arrowsize=1.2, arrowwidth=1, arrowcolor=color, text=""))
    if crosses:
        fig.add_trace(go.Scatter(x=[c[0] for c in crosses], y=[c[1] for c in crosses],
                                 mode="markers", name="dropped here",
                                 marker={"symbol": "x-thin-open", "size": 12, "color": "#d62728",
                                         "line": {"width": 2, "color": "#d62728"}},
                                 hovertext=[c[2] for c in crosses], hoverinfo="text"))
    if dup_marks:
        fig.add_trace(go.Scatter(x=x[dup_marks], y=y[dup_marks], mode="markers",
                                 name="duplicate delivery", hoverinfo="skip",
                                 marker={"symbol": "circle-open", "size": 16, "color": "#ff7f0e",
                                         "line": {"width": 2}}))
    for k in MARKS:  # legend entries, one per kind present
        if k in kinds:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=k,
                                     marker={"symbol": MARKS[k][0], "size": MARKS[k][2],
                                             "color": MARKS[k][1]}))
    labels = _clock_labels(hb) if len(ev) <= MAX_LABELLED else None
    sizes = [MARKS[k][2] for k in kinds]
    if labels is not None:  # an observation that stamped another event is shown as its label
        stamped = set()
        for name in ("lamport", "vclock"):
            if "name" in ev and (ev["name"] == name).any():
                stamped.update(rcz.stamped_events(hb, name)["event"].tolist())
        names = ev["name"].tolist() if "name" in ev else [None] * len(ev)
        for i, k in enumerate(kinds):
            if k == "obs" and names[i] in ("lamport", "vclock") and i not in stamped:
                sizes[i] = 3
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="markers+text" if labels else "markers", name="events",
        customdata=np.arange(len(ev)), hovertext=_hover(hb), hoverinfo="text",
        text=labels, textposition="top center", textfont={"size": 10, "color": "#333333"},
        showlegend=False, cliponaxis=False,
        marker={"symbol": [MARKS[k][0] for k in kinds], "size": sizes,
                "color": colors, "line": {"width": 0}},
    ))
    has_other = bool(segs["others"]) or any(c[1] == other for c in crosses)
    ticks = [f"node {n}" for n in data.nodes] + (["other nodes"] if has_other else [])
    fig.update_layout(
        title=title or f"space-time diagram of run {data.run_id}",
        annotations=annotations,
        height=max(260, 60 * len(ticks) + 140),
        template="plotly_white",
        xaxis={"title": "virtual time (ticks)", "zeroline": False},
        yaxis={"tickvals": list(range(len(ticks))), "ticktext": ticks,
               "range": [len(ticks) - 0.5, -0.7],
               "zeroline": False, "showgrid": True, "gridcolor": "#bbbbbb"},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 90, "r": 20, "t": 70, "b": 40},
        clickmode="event",
    )
    graph = {
        "trace": len(fig.data) - 1,
        "prev": ev["prev"].astype(int).tolist(),
        "parent": ev["parent"].astype(int).tolist(),
        "colors": colors,
        "highlight": {"past": PAST, "future": FUTURE, "chosen": CHOSEN, "dim": DIM},
    }
    return fig, graph


_CLICK_JS = r"""
(function() {
  var gd = document.getElementById('%(div)s');
  var g = %(graph)s;
  var n = g.prev.length, next = new Array(n).fill(-1), kids = {};
  for (var e = 0; e < n; e++) {
    if (g.prev[e] >= 0) next[g.prev[e]] = e;
    if (g.parent[e] >= 0) (kids[g.parent[e]] = kids[g.parent[e]] || []).push(e);
  }
  function walk(start, step) {
    var seen = new Uint8Array(n), stack = [start];
    while (stack.length) {
      var e = stack.pop();
      step(e).forEach(function(p) { if (p >= 0 && !seen[p]) { seen[p] = 1; stack.push(p); } });
    }
    return seen;
  }
  function show(id) {
    var past = walk(id, function(e) { return [g.prev[e], g.parent[e]]; });
    var fut = walk(id, function(e) { return [next[e]].concat(kids[e] || []); });
    var c = new Array(n);
    for (var e = 0; e < n; e++)
      c[e] = e === id ? g.highlight.chosen : past[e] ? g.highlight.past
           : fut[e] ? g.highlight.future : g.highlight.dim;
    Plotly.restyle(gd, {'marker.color': [c]}, [g.trace]);
    gd.setAttribute('data-selected', id);
    gd.setAttribute('data-past', past.reduce(function(a, b) { return a + b; }, 0));
    gd.setAttribute('data-future', fut.reduce(function(a, b) { return a + b; }, 0));
  }
  gd.on('plotly_click', function(ev) {
    var pts = ev.points.filter(function(p) { return p.curveNumber === g.trace; });
    if (pts.length) show(pts[0].customdata);
  });
  gd.on('plotly_doubleclick', function() {
    Plotly.restyle(gd, {'marker.color': [g.colors]}, [g.trace]);
    gd.removeAttribute('data-selected');
  });
  gd.raysimShow = show;
  gd.setAttribute('data-events', n);
  var m = /select=(\d+)/.exec(window.location.hash);  // e.g. diagram.html#select=12
  if (m && +m[1] < n) show(+m[1]);
})();
"""


def fragment(fig: go.Figure, graph: dict[str, Any], div_id: str) -> str:
    """The diagram's ``<div>`` and click handler, for a page that already loads plotly.js."""
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                      config={"displaylogo": False, "responsive": True})
    script = _CLICK_JS % {"div": div_id, "graph": json.dumps(graph)}
    return f"{div}\n<script type=\"text/javascript\">{script}</script>"


def page(fig: go.Figure, graph: dict[str, Any], note: str = "") -> str:
    """A self-contained HTML page (plotly.js inline; works offline) with the diagram."""
    title = html.escape(str(fig.layout.title.text or "space-time diagram"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head>\n<body "
        "style=\"font-family: sans-serif; margin: 1em 2em\">\n"
        f"<p>{html.escape(note)}</p>\n"
        "<p>Click an event to highlight its causal past (blue) and future (orange); "
        "double-click to clear.</p>\n"
        + fragment(fig, graph, "diagram")
        + "\n</body></html>\n"
    )


def diagram(
    where: Where,
    run_id: str | None = None,
    nodes: Sequence[int] | None = None,
    t_from: int | None = None,
    t_to: int | None = None,
) -> tuple[str, DiagramData]:
    """The self-contained HTML page of a run's space-time diagram, and the data drawn."""
    data = load_diagram(where, run_id, nodes, t_from, t_to)
    if not len(data.events):
        raise ConfigError(
            f"{where}: run {data.run_id} has no events for those nodes and times"
        )
    fig, graph = build_figure(data)
    shown = len(data.nodes)
    note = (f"Run {data.run_id}: {shown} of {data.n_nodes} nodes, "
            f"{len(data.events)} rows, times {int(data.events['time'].min())}–"
            f"{int(data.events['time'].max())}.")
    return page(fig, graph, note), data


SHIVIZ_REGEX = r'(?<host>\S+) "(?<event>[^"]*)" (?<clock>\{.*\})'


def _describe_event(r: Any) -> str:
    if r.kind == "send":
        return f"send {r.msg_type} to node {r.peer} (t={r.time})"
    if r.kind == "deliver":
        return f"deliver {r.msg_type} from node {r.peer} (t={r.time})"
    if r.kind == "timer":
        return f"timer {r.msg_type} (t={r.time})"
    if r.kind == "obs":
        return f"{r.name} = {_fmt_value(_obs_value(r))} (t={r.time})"
    return f"{r.kind} (t={r.time})"


def shiviz(data: DiagramData) -> str:
    """The events of ``data`` in ShiViz's input format (regex line, delimiter line, log).

    One line per event: host ``node<N>``, a quoted description, and the event's vector
    clock as JSON, from the log's happens-before graph (each event ticks its node's entry,
    so the first event of a node has 1, as ShiViz requires), non-zero entries only.
    """
    hb = rcz.happens_before(data.events)
    hosts = [f"node{n}" for n in hb.nodes.tolist()]
    lines = [SHIVIZ_REGEX, ""]
    order = np.lexsort((hb.events["pos"].to_numpy(), hb.events["node"].to_numpy(),
                        hb.events["time"].to_numpy()))
    rows: list[Any] = list(hb.events.itertuples(index=False))
    for e in order.tolist():
        r = rows[e]
        past = hb.past[e]
        clock = {hosts[c]: int(past[c]) for c in np.flatnonzero(past).tolist()}
        desc = _describe_event(r).replace('"', "'")
        lines.append(f'node{r.node} "{desc}" {json.dumps(clock, separators=(",", ":"))}')
    return "\n".join(lines) + "\n"
