"""What theory predicts for the simulated protocols, to overlay on measured curves.

All predictions are for *synchronous* rounds — every node acts once per round and every
exchange of round r, request and reply, uses the state at the start of round r; this is
``phase = "synchronous"`` — with fanout 1, uniform random peers over N nodes, and
independent loss of each message with probability p (q = 1 − p). The other phases are not
this model: with ``phase = "lockstep"`` the rounds start together but a reply carries the
responder's state when the request arrives, which may already include news of the same round
(measured at N = 1000, 200 seeds, delays 10–100 ticks per 1000-tick round: push-pull 8.04
rounds against the synchronous 9.14, pull 12.9 against 13.8; push is unaffected), and with
``phase = "random"`` news can also travel several hops within one period. Both finish sooner
than these curves. ``tests/test_gossip.py`` checks the synchronous phase against an
independent synchronous-round model over 200 seeds.

Rounds until every node knows (push): log₂N + ln N + O(1) — Frieze and Grimmett,
"The shortest-path problem for graphs with random arc-lengths" (Discrete Appl. Math., 1985)
and Pittel, "On spreading a rumor" (SIAM J. Appl. Math. 47(1), 1987). Push-pull:
log₃N + O(log log N) — Karp, Schindelhauer, Shenker and Vöcking, "Randomized rumor
spreading" (FOCS 2000). Pull: the informed fraction about doubles while small and the
uninformed fraction squares each round once most know (Demers et al., "Epidemic algorithms
for replicated database maintenance", PODC 1987), i.e. log₂N + O(log log N).

The curves are the mean-field recursions of Demers et al. for the uninformed fraction u
(x = 1 − u informed), generalised to loss. They give the mean fraction; rounds to "all
know" taken from them (:func:`rounds_to_fraction`) are within about a round of the
measured means (N = 1000 synchronous: push 18 vs 18.0, pull 13 vs 13.8, push-pull 9 vs 9.1):

=========  =================================================  ==========================
mode       u after one round                                  why
=========  =================================================  ==========================
push       u · (1 − q/(N−1))^(N·x)                            no informed push arrives
pull       u · (1 − q²·x)                                     own request and reply fail
push_pull  u · (1 − q²·x) · (1 − q/(N−1))^(N·x)               both of the above
=========  =================================================  ==========================

Push-pull averaging (Jelasity, Montresor and Babaoglu, "Gossip-based aggregation in large
dynamic networks", ACM TOCS 23(3), 2005): the variance across nodes shrinks by about
1/(2·√e) ≈ 0.303 per round.
"""

from __future__ import annotations

import math

import numpy as np

MODES = ("push", "pull", "push_pull")
AVERAGING_FACTOR = 1.0 / (2.0 * math.sqrt(math.e))

REFERENCES = {
    "push": "log₂N + ln N (Frieze & Grimmett 1985; Pittel 1987)",
    "pull": "log₂N + O(log log N) (Demers et al. 1987; Karp et al. 2000)",
    "push_pull": "log₃N + O(log log N) (Karp, Schindelhauer, Shenker & Vöcking 2000)",
    "averaging": "variance × 1/(2√e) per round (Jelasity, Montresor & Babaoglu 2005)",
}


def push_rounds(n: float) -> float:
    """Pittel's asymptotic rounds for push to inform all n nodes: log₂n + ln n."""
    return math.log2(n) + math.log(n)


def push_pull_rounds(n: float) -> float:
    """The leading term of Karp et al.'s bound for push-pull: log₃n."""
    return math.log(n, 3)


def _check(mode: str, n: int, loss: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if n < 2:
        raise ValueError("n must be at least 2")
    if not 0.0 <= loss < 1.0:
        raise ValueError("loss must be in [0, 1)")


def mean_field(mode: str, n: int, loss: float = 0.0, rounds: int | None = None) -> np.ndarray:
    """Informed fraction after rounds 0, 1, …: ``rounds + 1`` values, or until all know.

    Without ``rounds`` the recursion stops once fewer than half a node is expected to be
    uninformed (N·u < 1/2), which is the prediction for "everyone knows".
    """
    _check(mode, n, loss)
    q = 1.0 - loss
    u = 1.0 - 1.0 / n
    out = [1.0 - u]
    limit = rounds if rounds is not None else 10_000
    for _ in range(limit):
        x = 1.0 - u
        miss_push = (1.0 - q / (n - 1)) ** (n * x)
        if mode == "push":
            u *= miss_push
        elif mode == "pull":
            u *= 1.0 - q * q * x
        else:
            u *= (1.0 - q * q * x) * miss_push
        out.append(1.0 - u)
        if rounds is None and n * u < 0.5:
            break
    return np.array(out)


def rounds_to_fraction(mode: str, n: int, fraction: float, loss: float = 0.0) -> float:
    """Mean-field rounds until ``fraction`` of the nodes know (1.0: until N·u < 1/2)."""
    curve = mean_field(mode, n, loss)
    if fraction >= 1.0:
        return float(len(curve) - 1)
    hit = np.nonzero(curve >= fraction)[0]
    return float(hit[0]) if len(hit) else math.nan


def averaging_variance(rounds: int, initial: float = 1.0) -> np.ndarray:
    """Predicted variance after rounds 0..rounds of push-pull averaging."""
    return initial * AVERAGING_FACTOR ** np.arange(rounds + 1, dtype=float)
