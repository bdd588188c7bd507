"""The Chord paper's churn figure as data: Stoica et al. (SIGCOMM 2001), §6.5 and Fig. 12.

:func:`churn_points` reads ``experiments/chord_paper_churn.csv`` (rows ``churn_rate``,
``failed``, ``kind``; the file's comment says where each number comes from), which the
report overlays on the failed lookups of ``experiments/chord_paper_churn.toml``
(:data:`EXPERIMENT`). The rows are the estimate the paper's text gives for its Fig. 12
(failed ≈ 5k/500 with k = 30 s · R failures between stabilizations, "about 3 %" at R = 0.1;
the measured curve is "slightly worse"): the figure's own points were not available as
text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

EXPERIMENT = "chord_paper_churn"  # the experiment whose report overlays the paper's points
POINTS = Path(__file__).resolve().parents[2] / "experiments" / "chord_paper_churn.csv"
LABEL = "Stoica et al. 2001 §6.5: 5k/500, k = 30·R (Fig. 12 is 'slightly worse')"


def churn_points(path: Path = POINTS) -> pd.DataFrame:
    """The paper's points (``churn_rate``, ``failed``, ``kind``); empty if the file is absent
    (an installed package without the repository's ``experiments/``)."""
    if not path.is_file():
        return pd.DataFrame(columns=["churn_rate", "failed", "kind"])
    return pd.read_csv(path, comment="#")


__all__ = ["EXPERIMENT", "LABEL", "POINTS", "churn_points"]
