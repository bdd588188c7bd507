"""Protocols' sections of ``raysim report``: blocks of figures and tables, and the built-ins'.

A protocol names its section with ``report = "module:function"`` (see
:class:`raysim.api.protocol.Contract`). :mod:`raysim.analysis.report` imports the function
when it builds a page, calls it once per distinct section with the ok runs of every
protocol that shares it, and renders the :class:`Part` values it returns, in order. A
protocol of your own adds its section the same way, in a module of its own, without
editing the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from raysim import analysis as ra
from raysim.analysis.load import Where


@dataclass(frozen=True)
class Part:
    """One block of a report section: a heading, a plain-text note, a figure or a table.

    ``figure_id`` is the figure's HTML id (stable ids let readers link to a figure); the
    report numbers figures without one.
    """

    title: str
    note: str = ""
    figure: go.Figure | None = None
    table: pd.DataFrame | None = None
    figure_id: str | None = None


def gossip(where: Where, runs: pd.DataFrame) -> list[Part]:
    """Rumor dissemination: convergence curves, rounds to 50/99/100 %, messages per node."""
    times = ra.informed_times(where, runs)
    if not any(len(t) for t in times.values()):
        return []
    curves = ra.convergence_curves(where, runs=runs, times=times)
    per_run = ra.milestones(where, runs=runs, times=times)
    summary = ra.milestone_summary(per_run)
    missing = _against_n_missing(runs)
    against_n = [
        Part("Rounds to 50 %, 99 % and 100 %",
             "Mean ± 95 % confidence interval over seeds against the number of nodes; thin "
             "lines: mean-field rounds; black dash-dot: Pittel's log₂N + ln N for push "
             "without loss.",
             ra.fig_milestones(summary, ra.theory_milestones(summary, runs)),
             figure_id="fig-milestones"),
        Part("Messages per node",
             "Messages sent until the run stopped, divided by the number of nodes.",
             ra.fig_messages(summary), figure_id="fig-messages"),
    ] if missing is None else [Part("Rounds and messages against N", missing)]
    return [
        Part("Convergence",
             "Fraction of nodes that know the update against rounds (time / protocol.period): "
             "the line is the mean over seeds, the band its 95 % confidence interval; dotted "
             "lines are the mean-field prediction for synchronous rounds (Demers et al. 1987), "
             "which runs with phase = \"random\" beat because news can travel several hops "
             "within one round.",
             ra.fig_convergence(curves, ra.theory_curves(curves, runs)),
             figure_id="fig-convergence"),
        *against_n,
        Part("Summary over seeds", table=summary),
    ]


def _against_n_missing(runs: pd.DataFrame) -> str | None:
    """Why figures against N cannot be drawn from ``runs`` (None when they can)."""
    ns = sorted(runs["network.nodes"].dropna().unique()) if "network.nodes" in runs else []
    if len(ns) > 1:
        return None
    where = f"N = {ns[0]}" if ns else "one network size"
    return ("Not shown: rounds and messages against N need runs at several network sizes, "
            f"and these runs all have {where} (a sweep over network.nodes, or raysim run … "
            "--set network.nodes=… into the same results directory, gives them). Their "
            "figures are in the summary table below.")


def averaging(where: Where, runs: pd.DataFrame) -> list[Part]:
    """Push-pull averaging: the variance of the nodes' values per round."""
    summary = ra.variance_summary(where, runs=runs)
    if not len(summary):
        return []
    return [Part(
        "Averaging: variance per round",
        "Variance of the nodes' values per round (mean and 95 % band over seeds); dotted: "
        "× 1/(2√e) ≈ 0.30 per round (Jelasity, Montresor and Babaoglu 2005).",
        ra.fig_variance(summary), figure_id="fig-variance")]


def chord(where: Where, runs: pd.DataFrame) -> list[Part]:
    """Chord figures and tables (built by :mod:`raysim.analysis.chord_report`)."""
    from raysim.analysis.chord_report import report_parts

    return [Part(p.title, p.note, p.figure, p.table, f"fig-chord-{i}")
            for i, p in enumerate(report_parts(where, runs))]


__all__ = ["Part", "averaging", "chord", "gossip"]
