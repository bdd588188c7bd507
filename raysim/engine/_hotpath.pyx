# cython: language_level=3
"""The per-node driver's hot path, compiled: the event loop and the handlers' context.

The compiled twin of two pure-Python pieces that stay the reference and the fallback:
:class:`raysim.engine.context.ShardContext` (here :class:`FastContext`, the same methods,
attributes, checks and error messages) and the event loop of
:meth:`raysim.engine.pernode.PerNodeDriver.run` (here :func:`run_events`). Both twins take
the same decisions in the same order: the same sends, timers, observations, sequence
numbers and random words, so the event log is byte-for-byte the one the pure-Python path
writes (``tests/test_hotpath.py`` compares them on faulty runs of several protocols).

NOTE: what this buys is the interpreter's bookkeeping around each handler call (about
two thirds of the per-node engine's cost per event); the handlers themselves stay Python.
Built by ``pip install`` from this file when Cython and a C compiler are there
(``setup.py``); ``RAYSIM_PURE_PYTHON=1`` selects the pure-Python path anyway.
"""

import heapq

from libc.stdint cimport uint64_t

from raysim.engine.observe import check_int, check_name, check_value
from raysim.engine.order import P_MSG, P_TIMER

cdef extern from *:
    """
    static inline unsigned long long raysim_mulhi(unsigned long long a, unsigned long long b) {
        return (unsigned long long)(((unsigned __int128)a * b) >> 64);
    }
    """
    unsigned long long raysim_mulhi(unsigned long long a, unsigned long long b)

# the SplitMix64 constants of raysim.values.rng (GOLDEN, _C1, _C2)
cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t C1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t C2 = 0x94D049BB133111EBULL

cdef long _P_MSG = P_MSG
cdef long _P_TIMER = P_TIMER
cdef object _INT64_MIN = -(2 ** 63)
cdef object _INT64_END = 2 ** 63


cdef class FastContext:
    """:class:`raysim.engine.context.ShardContext`, compiled (see the module docstring)."""

    cdef public object n_nodes, seed, node, now, cause
    cdef public Py_ssize_t _li
    cdef public object _evseq, _window_end
    cdef public list _nseq, _seqs, _tseqs, _epochs, _rngs, _storage
    cdef public list _sends, _new_timers, _late, _obs
    cdef public object _topology, _adj, _deg, _cancelled
    cdef const int[:] _adj_view
    cdef Py_ssize_t _deg_c
    cdef unsigned long long _others  # n_nodes - 1, for a draw over every other node

    def __init__(self, n_nodes, topology, list send_seq, list timer_seq, list event_seq,
                 list epochs, list rngs, cancelled, list storage, seed=0):
        self.n_nodes = n_nodes
        self.seed = seed
        self.node = -1
        self.now = 0
        self._li = -1
        self.cause = -1
        self._evseq = -1
        self._nseq = event_seq
        self._window_end = 0
        self._seqs = send_seq
        self._tseqs = timer_seq
        self._epochs = epochs
        self._rngs = rngs
        self._topology = topology
        self._adj = topology.flat
        self._deg = topology.degree
        self._deg_c = topology.degree
        if self._adj is not None:
            self._adj_view = self._adj
        self._others = n_nodes - 1
        self._cancelled = cancelled
        self._storage = storage
        self._sends = []
        self._new_timers = []
        self._late = []
        self._obs = []

    def send(self, dst, msg):
        """Send ``msg`` to ``dst`` (routed at the end of the window); returns the message id."""
        cdef Py_ssize_t li = self._li
        cdef list seqs = self._seqs
        cdef list ns = self._nseq
        s = seqs[li]
        seqs[li] = s + 1
        q = ns[li]
        ns[li] = q + 1
        node = self.node
        self._sends.append((self.now, node, dst, s, msg, q, self._evseq))
        return (node << 32) | s

    def set_timer(self, delay, tag=None):
        """Fire ``on_timer(ctx, tag)`` after ``delay`` ticks; returns the timer id."""
        if delay < 0:
            raise ValueError(f"timer delay must be >= 0 ticks, got {delay}")
        cdef Py_ssize_t li = self._li
        tid = self._tseqs[li]
        self._tseqs[li] = tid + 1
        when = self.now + delay
        if when < self._window_end:
            heapq.heappush(self._late, (when, P_TIMER, self.node, tid, 0, self._epochs[li], tag))
        else:
            self._new_timers.append((when, self.node, tid, self._epochs[li], tag))
        return tid

    def cancel_timer(self, timer_id):
        """Cancel a pending timer of this node (an id it was never given is ignored)."""
        if 0 <= timer_id < self._tseqs[self._li]:
            self._cancelled.add((self.node, timer_id))

    def emit(self, name, value=1.0, peer=-1, ref=-1):
        """Record an observation (``peer`` and ``ref`` fill the row's peer and msg_id)."""
        if type(value) is float and value == value:
            code = 0
        else:
            value, code = check_value(value)
        if type(name) is not str or not name:
            check_name(name)
        if type(peer) is not int or type(ref) is not int or not -1 <= peer < _INT64_END:
            peer, ref = check_int(peer, "peer"), check_int(ref, "ref")
        elif not _INT64_MIN <= ref < _INT64_END:
            check_int(ref, "ref")
        cdef Py_ssize_t li = self._li
        cdef list ns = self._nseq
        q = ns[li]
        ns[li] = q + 1
        self._obs.append((self.now, self.node, name, value, peer, ref, q, code))

    @property
    def rng(self):
        """This node's random stream."""
        return self._rngs[self._li]

    @property
    def peers(self):
        """This node's neighbours."""
        return self._topology.peers(self.node)

    def random_peer(self):
        """A uniformly random neighbour (never the node itself): the stream's next word."""
        r = self._rngs[self._li]
        cdef unsigned long long c = r._ctr
        c += 1
        r._ctr = c
        cdef uint64_t key = r._key
        cdef uint64_t x = key + c * GOLDEN
        x = (x ^ (x >> 30)) * C1
        x = (x ^ (x >> 27)) * C2
        x = x ^ (x >> 31)
        cdef long long v
        cdef long long nd
        if self._adj is None:
            v = <long long>raysim_mulhi(x, self._others)
            nd = self.node
            return v + (1 if v >= nd else 0)
        return self._adj_view[self._li * self._deg_c
                              + <Py_ssize_t>raysim_mulhi(x, <unsigned long long>self._deg_c)]

    @property
    def storage(self):
        """Stable storage that survives crash-recovery."""
        return self._storage[self._li]


def run_events(driver, FastContext ctx, list seq_p, list seq_t, list seq_n, list seq_li,
               list seq_k, list m_src, list m_cor, list m_id, list m_pl, list t_id,
               list t_ep, list ttags, list l_kind, list l_arg, list m_seq, list t_seq,
               list crashed_m, list skipped_t, list late_rows, order, keys, list pos):
    """The loop of :meth:`~raysim.engine.pernode.PerNodeDriver.run`, compiled.

    ``pos[0]`` is left at the index of the event being handled when a handler raises
    (the driver names that event in its error), and at -1 when every event ran.
    """
    cdef Py_ssize_t i, n = len(seq_p), li, k
    cdef long p
    cdef list protos = driver.protos
    cdef list alive = driver.alive
    cdef list epoch = driver.epoch
    cdef list nseq = driver.event_seq
    cdef set cancelled = driver.cancelled
    cdef list late = ctx._late
    pos[0] = 0
    for i in range(n):
        if late:
            pos[0] = i
            j = order[i]
            driver._run_late(tuple([int(c[j]) for c in keys]), late_rows)
        p = seq_p[i]
        li = seq_li[i]
        k = seq_k[i]
        if p == _P_MSG:
            q = nseq[li]
            nseq[li] = q + 1
            m_seq[k] = q
            if not alive[li]:
                crashed_m.append(k)
                continue
            if m_cor[k]:  # the receiver's checksum fails: dropped, logged as corrupt
                continue
            ctx.now = seq_t[i]
            ctx.node = seq_n[i]
            ctx._li = li
            ctx.cause = m_id[k]
            ctx._evseq = q
            pos[0] = i
            protos[li].on_message(ctx, m_src[k], m_pl[k])
        elif p == _P_TIMER:
            nd = seq_n[i]
            if t_ep[k] != epoch[li] or (cancelled and (nd, t_id[k]) in cancelled):
                cancelled.discard((nd, t_id[k]))
                skipped_t.append(k)
                continue
            q = nseq[li]
            nseq[li] = q + 1
            t_seq[k] = q
            ctx.now = seq_t[i]
            ctx.node = nd
            ctx._li = li
            ctx.cause = t_id[k]
            ctx._evseq = q
            pos[0] = i
            protos[li].on_timer(ctx, ttags[k])
        else:
            pos[0] = i
            driver._lifecycle(seq_t[i], seq_n[i], l_kind[k], l_arg[k])
    pos[0] = -1
    while late:
        driver._run_late(None, late_rows)
