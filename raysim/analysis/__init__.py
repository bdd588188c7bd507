"""raysim.analysis: results directories into pandas, convergence statistics, theory, figures.

Typical use (a notebook or a script)::

    from raysim import analysis as ra

    runs = ra.load_runs("results/gossip_convergence")          # one row per ok run
    curves = ra.convergence_curves("results/gossip_convergence", runs=runs)
    ra.fig_convergence(curves, ra.theory_curves(curves, runs)).show()

    per_run = ra.milestones("results/gossip_convergence", runs=runs)
    summary = ra.milestone_summary(per_run)                     # mean and 95 % band over seeds

Happens-before (``happens_before``, ``check_clock_condition``, ``causal_order_violations``)
is rebuilt from one run's events: see :mod:`raysim.analysis.causality`.

Event logs are read through ``pyarrow.dataset`` with only the needed columns and rows
(observations of one name, runs of the table), so large logs are never read whole.
"""

from raysim.analysis import theory
from raysim.analysis.averaging import variance_per_round, variance_summary
from raysim.analysis.causality import (
    ClockViolation,
    HappensBefore,
    causal_order_violations,
    check_clock_condition,
    happens_before,
    lamport_disagreement,
    stamped_events,
)
from raysim.analysis.figures import (
    fig_convergence,
    fig_messages,
    fig_milestones,
    fig_variance,
)
from raysim.analysis.gossip import (
    FRACTIONS,
    convergence_curves,
    informed_times,
    milestone_column,
    milestone_summary,
    milestones,
    theory_curves,
    theory_milestones,
)
from raysim.analysis.load import (
    events_dataset,
    fixed_params,
    load_events,
    load_runs,
    observations,
    open_results,
    param_columns,
    varying_params,
)
from raysim.analysis.stats import band_of, summarize, t975

__all__ = [
    "FRACTIONS",
    "ClockViolation",
    "HappensBefore",
    "band_of",
    "causal_order_violations",
    "check_clock_condition",
    "convergence_curves",
    "events_dataset",
    "fig_convergence",
    "fig_messages",
    "fig_milestones",
    "fig_variance",
    "fixed_params",
    "happens_before",
    "informed_times",
    "lamport_disagreement",
    "load_events",
    "load_runs",
    "milestone_column",
    "milestone_summary",
    "milestones",
    "observations",
    "open_results",
    "param_columns",
    "stamped_events",
    "summarize",
    "t975",
    "theory",
    "theory_curves",
    "theory_milestones",
    "variance_per_round",
    "variance_summary",
    "varying_params",
]
