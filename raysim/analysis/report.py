"""``raysim report RESULTS_DIR``: one self-contained HTML page per results directory.

The page holds the sweep's parameters (declared axes from ``sweep.json`` and the values the
runs actually took), the convergence figures with their theory overlays, a summary table
(mean and 95 % confidence interval over seeds), failed runs with their errors, and the run
table. plotly.js is embedded once, inline, so the file works offline; nothing is fetched.
The page depends only on the results (no timestamps), so rebuilding it gives the same file.
"""

from __future__ import annotations

import html
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from raysim import analysis as ra
from raysim.analysis.section import Part
from raysim.analysis.theory import REFERENCES
from raysim.errors import ConfigError
from raysim.experiments.results import (
    MANIFEST,
    RUNS,
    Location,
    locate,
    read_json,
    read_runs,
    write_text,
)

REPORT = "report.html"
MAX_TABLE_ROWS = 2000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0}
td,th{border:1px solid #ddd;padding:.2rem .45rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:.9rem}.failed{color:#a00}code{background:#f4f4f4;padding:0 .2rem}
.scroll{max-height:32rem;overflow:auto}details pre{white-space:pre-wrap;font-size:.75rem}
"""


def targets(where: str | Path) -> list[Location]:
    """The results directories under ``where``: itself if it holds ``runs.parquet``, else its
    immediate subdirectories that do; a ConfigError if there are none."""
    loc = locate(where)
    if not loc.exists():
        raise ConfigError(f"{where}: no such results directory")
    if not loc.is_dir():
        raise ConfigError(f"{where}: not a directory; expected a results directory")
    if loc.child(RUNS).exists():
        return [loc]
    if loc.local is not None:
        subs = sorted(p.name for p in loc.local.iterdir() if (p / RUNS).is_file())
        if subs:
            return [loc.child(s) for s in subs]
    raise ConfigError(f"{where}: no {RUNS} here or in its subdirectories; "
                      "expected a results directory written by raysim run or raysim sweep")


def _table(frame: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> str:
    shown = frame.head(max_rows)
    out = shown.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}")
    if len(frame) > max_rows:
        out += f'<p class="note">First {max_rows} of {len(frame)} rows; all are in {RUNS}.</p>'
    return f'<div class="scroll">{out}</div>'


def _sorted(values: pd.Series) -> list[Any]:
    uniq = list(values.unique())
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def _figure(fig: go.Figure, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True}))


def _params_section(runs_all: pd.DataFrame, manifest: Any) -> str:
    parts = ["<h2>Sweep parameters</h2>"]
    if isinstance(manifest, dict) and isinstance(manifest.get("sweep"), dict):
        sw = manifest["sweep"]
        rows = [{"axis": k, "values": json.dumps(v)} for k, v in sw.get("axes", {}).items()]
        for i, group in enumerate(sw.get("zip", [])):
            rows += [{"axis": f"{k} (zip group {i})", "values": json.dumps(v)}
                     for k, v in group.items()]
        reps = sw.get("replicates", [])
        rows.append({"axis": "replicates (seeds)", "values": f"{len(reps)}: {json.dumps(reps)}"})
        parts.append(f"<p>Declared in <code>{html.escape(str(manifest.get('source', '')))}"
                     f"</code>, master seed {html.escape(str(manifest.get('master_seed')))}; "
                     "each run's seed is derived from it and the run's parameters.</p>")
        parts.append(_table(pd.DataFrame(rows)))
    else:
        parts.append('<p class="note">No sweep here (no <code>sweep.json</code>): these are '
                     "single <code>raysim run</code>s. Below are the values they took.</p>")
    varying = ra.varying_params(runs_all)
    if varying:
        vals = [{"parameter": c, "values": ", ".join(map(str, _sorted(runs_all[c].dropna())))}
                for c in varying]
        parts.append("<p>Values taken by the runs:</p>" + _table(pd.DataFrame(vals)))
    fixed = ra.fixed_params(runs_all)
    if fixed:
        parts.append("<details><summary>Fixed parameters</summary>"
                     + _table(pd.DataFrame({"parameter": list(fixed),
                                            "value": [str(v) for v in fixed.values()]}))
                     + "</details>")
    return "\n".join(parts)


def _section_of(protocol: str, modules: tuple[str, ...]) -> tuple[str | None, str]:
    """The ``report`` reference of a protocol (None if it has none) or why it is unknown."""
    from raysim.protocols import resolve

    try:
        return resolve(protocol, modules).cls.report, ""
    except ConfigError as e:
        return None, str(e)


def _modules(value: Any) -> tuple[str, ...]:
    """The ``experiment.modules`` cell of a run row (JSON text of a list) as a tuple."""
    if not isinstance(value, str) or not value:
        return ()
    try:
        parsed = json.loads(value)
    except ValueError:
        return ()
    return tuple(str(m) for m in parsed) if isinstance(parsed, list) else ()


def _load_section(ref: str) -> Callable[[Location, pd.DataFrame], Sequence[Part]]:
    module, _, name = ref.partition(":")
    fn: Any = getattr(importlib.import_module(module), name)
    return cast(Callable[[Location, pd.DataFrame], Sequence[Part]], fn)


def _render(parts: Sequence[Part], counter: list[int]) -> str:
    out = []
    for part in parts:
        out.append(f"<h2>{html.escape(part.title)}</h2>")
        if part.note:
            out.append(f"<p>{html.escape(part.note)}</p>")
        if part.figure is not None:
            fid = part.figure_id or f"fig-section-{counter[0]}"
            counter[0] += 1
            out.append(_figure(part.figure, fid))
        if part.table is not None:
            out.append(_table(part.table))
    return "\n".join(out)


def _protocol_sections(loc: Location, runs: pd.DataFrame) -> str:
    """Each protocol's own section (its ``report`` attribute), once per distinct section,
    with the ok runs of every protocol sharing it, in the order the runs first name them."""
    mods = runs.get("experiment.modules", pd.Series([None] * len(runs)))
    keys = [(str(p), _modules(m)) for p, m in zip(runs["protocol"], mods, strict=True)]
    refs: dict[str, list[int]] = {}
    unknown: dict[str, str] = {}
    found: dict[tuple[str, tuple[str, ...]], str | None] = {}
    for i, key in enumerate(keys):
        if key not in found:
            found[key], why = _section_of(*key)
            if why:
                unknown[key[0]] = why
        ref = found[key]
        if ref is not None:
            refs.setdefault(ref, []).append(i)
    body, counter = [], [0]
    for ref, rows in refs.items():
        parts = _load_section(ref)(loc, runs.iloc[rows].reset_index(drop=True))
        body.append(_render(parts, counter))
    for protocol, why in unknown.items():
        body.append(f'<p class="note">Runs of {html.escape(protocol)}: no protocol section '
                    f"({html.escape(why)}).</p>")
    return "\n".join(b for b in body if b)


def _violations_section(runs_all: pd.DataFrame) -> str:
    """Runs whose safety checks found violations, with the first few of each."""
    if "metric.violations" not in runs_all:
        return ""
    hit = runs_all[runs_all["metric.violations"].fillna(0) > 0]
    if not len(hit):
        return ""
    checks = sorted(c for c in runs_all.columns if c.startswith("metric.violations."))
    parts = [f"<h2>Safety violations ({len(hit)} run(s))</h2>",
             "<p>Safety properties the protocols declare, checked over each run's full event "
             "log; the first violations of each run (time, nodes, what).</p>",
             _table(hit[["run_id", "protocol", "metric.violations", *checks]])]
    for r in hit.itertuples():
        try:
            first = json.loads(str(getattr(r, "violations", "") or "[]"))
        except ValueError:
            first = []
        rows = pd.DataFrame([{"check": v["check"], "time": v["time"],
                              "nodes": ", ".join(map(str, v["nodes"])), "detail": v["detail"]}
                             for v in first[:5]])
        parts.append(f"<p>Run <code>{html.escape(str(r.run_id))}</code>:</p>" + _table(rows))
    return "\n".join(parts)


def _runs_section(runs_all: pd.DataFrame) -> str:
    varying = ra.varying_params(runs_all)
    wanted = ["run_id", *varying, "replicate", "seed", "status", "end_time", "sent", "delivered",
              "lost", *sorted(c for c in runs_all.columns if c.startswith("metric.")),
              "wall_seconds", "error"]
    cols = [c for c in dict.fromkeys(wanted) if c in runs_all.columns]
    parts = [f"<h2>Runs ({len(runs_all)})</h2>", _table(runs_all[cols])]
    failed = runs_all[runs_all["status"] != "ok"]
    if len(failed):
        items = "".join(
            f"<details><summary class=\"failed\">{html.escape(str(r.run_id))}: "
            f"{html.escape(str(r.error))}</summary><pre>{html.escape(str(r.traceback))}</pre>"
            "</details>"
            for r in failed.itertuples()
        )
        parts.insert(1, f"<p class=\"failed\">{len(failed)} run(s) failed:</p>{items}")
    return "\n".join(parts)


def build(where: str | Path | Location) -> str:
    """The report page of one results directory, as HTML text."""
    loc = ra.open_results(where)
    runs_all = read_runs(loc)
    assert runs_all is not None
    keys = [c for c in [*ra.param_columns(runs_all), "replicate", "run_id"] if c in runs_all]
    runs_all = runs_all.sort_values(keys, kind="stable").reset_index(drop=True)
    runs = runs_all[runs_all["status"] == "ok"].reset_index(drop=True)
    name = str(runs_all["experiment"].iloc[0]) if len(runs_all) else loc.display
    versions = ", ".join(sorted(map(str, runs_all.get("raysim_version", pd.Series()).dropna()
                                    .unique())))
    body = [
        f"<h1>raysim report: {html.escape(name)}</h1>",
        f"<p>{len(runs)} of {len(runs_all)} runs ok · protocol(s) "
        f"{html.escape(', '.join(sorted(map(str, runs_all['protocol'].unique()))))} · "
        f"raysim {html.escape(versions)} · results <code>{html.escape(loc.display)}</code></p>",
        _params_section(runs_all, read_json(loc, MANIFEST)),
    ]
    if len(runs):
        body.append(_protocol_sections(loc, runs))
    body.append(_violations_section(runs_all))
    body.append(_runs_section(runs_all))
    refs = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>"
                   for k, v in _references(runs).items())
    if refs:
        body.append(f"<h2>Theory references</h2><ul class=\"note\">{refs}</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>raysim report: {html.escape(name)}</title><style>{_CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


CHORD_REFERENCE = ("½·log₂N hops per lookup; failures and churn (Stoica, Morris, Karger, "
                   "Kaashoek & Balakrishnan 2001)")


def _references(runs: pd.DataFrame) -> dict[str, str]:
    """The theory references of the sections this report has (none for other protocols)."""
    protocols = set(map(str, runs["protocol"].unique())) if len(runs) else set()
    refs: dict[str, str] = {}
    if any(p.startswith("gossip") and p != "gossip.average" for p in protocols):
        refs.update({k: v for k, v in REFERENCES.items() if k != "averaging"})
    if "gossip.average" in protocols:
        refs["averaging"] = REFERENCES["averaging"]
    if "chord" in protocols:
        refs["chord"] = CHORD_REFERENCE
    return refs


def write(where: str | Path, out_name: str = REPORT) -> list[str]:
    """Write ``report.html`` into each results directory under ``where``; returns the paths."""
    written = []
    for loc in targets(where):
        target = write_text(loc, out_name, build(loc))
        written.append(target.display)
    return written


__all__: Sequence[str] = ("build", "targets", "write")
