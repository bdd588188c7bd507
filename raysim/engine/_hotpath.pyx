# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-node driver's hot path, compiled: the event loop and the handlers' context.

The compiled twin of two pure-Python pieces that stay the reference and the fallback:
:class:`raysim.engine.context.ShardContext` (here :class:`FastContext`, the same methods,
attributes, checks and error messages) and the event loop of
:meth:`raysim.engine.pernode.PerNodeDriver.run` (here :func:`run_events`). Both twins take
the same decisions in the same order: the same sends, timers, observations, sequence
numbers and random words, so the event log is byte-for-byte the one the pure-Python path
writes (``tests/test_hotpath.py`` compares them on faulty runs of several protocols). At
the end of the file, the pending pools' take loop (:mod:`raysim.engine.pending`:
:class:`Chunk`, :func:`make_chunk`, :class:`ChunkHeap`, :func:`take_chunks`,
:func:`join_blocks`), the same rows in the same order
as the Python one (``tests/test_pending.py``).

NOTE: what this buys is the interpreter's bookkeeping around each handler call (about
two thirds of the per-node engine's cost per event); the handlers themselves stay Python.
Built by ``pip install`` from this file when Cython and a C compiler are there
(``setup.py``); ``RAYSIM_PURE_PYTHON=1`` selects the pure-Python path anyway.
"""

import heapq

import numpy as np

from libc.stdint cimport uint64_t

from raysim.engine.observe import check_int, check_name, check_value
from raysim.engine.order import P_MSG, P_NODE, P_TIMER
from raysim.values.rng import draw_sample, draw_shuffle

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

cdef long _P_NODE = P_NODE
cdef long _P_MSG = P_MSG
cdef long _P_TIMER = P_TIMER
cdef object _INT64_MIN = -(2 ** 63)
cdef object _INT64_END = 2 ** 63
cdef object _U64_END = 2 ** 64
cdef object _TIME_END = 2 ** 62  # a delay below it added to a time stays in int64
cdef double _INV_2_53 = 1.0 / 9007199254740992.0


cdef inline uint64_t _word(uint64_t key, uint64_t ctr):
    """Word ``ctr`` of the SplitMix64 stream started at ``key`` (NodeRng.next_u64)."""
    cdef uint64_t x = key + ctr * GOLDEN
    x = (x ^ (x >> 30)) * C1
    x = (x ^ (x >> 27)) * C2
    return x ^ (x >> 31)


cdef class FastRng:
    """:class:`raysim.values.rng.NodeRng`, compiled: the same stream, word for word, and the
    same methods with the same results and errors (``tests/test_hotpath.py`` compares them).

    NOTE: the key and the counter are C words, not Python ints: a draw allocates nothing
    but its result, and ``random_peer`` reads them without an attribute lookup.
    """

    cdef public uint64_t _key, _ctr

    def __init__(self, key):
        self._key = key & 0xFFFFFFFFFFFFFFFF
        self._ctr = 0

    def __reduce__(self):
        return _rng_at, (self._key, self._ctr)

    def next_u64(self):
        """The next raw 64-bit word of the stream."""
        self._ctr += 1
        return _word(self._key, self._ctr)

    def random(self):
        """A float uniform in [0, 1)."""
        self._ctr += 1
        return <double>(_word(self._key, self._ctr) >> 11) * _INV_2_53

    def randrange(self, n):
        """An int uniform in [0, n) (Lemire's multiply-shift; bias below 2^-40 for n < 2^24)."""
        if n <= 0:
            raise ValueError(f"randrange: n must be positive, got {n}")
        if type(n) is int and n < _U64_END:
            self._ctr += 1
            return raysim_mulhi(_word(self._key, self._ctr), <unsigned long long>n)
        return (self.next_u64() * n) >> 64

    def randint(self, a, b):
        """An int uniform in [a, b], both ends included."""
        return a + self.randrange(b - a + 1)

    def uniform(self, a, b):
        """A float uniform in [a, b)."""
        return a + (b - a) * self.random()

    def choice(self, seq):
        """One element of a non-empty sequence, uniformly."""
        return seq[self.randrange(len(seq))]

    def sample(self, seq, k):
        """k distinct elements of ``seq`` (partial Fisher-Yates over the indices)."""
        return draw_sample(self, seq, k)

    def shuffle(self, items):
        """Shuffle a list in place (Fisher-Yates)."""
        draw_shuffle(self, items)


def _rng_at(key, ctr):
    """A :class:`FastRng` at counter ``ctr`` (unpickling)."""
    r = FastRng(key)
    r._ctr = ctr
    return r


cdef class FastContext:
    """:class:`raysim.engine.context.ShardContext`, compiled (see the module docstring).

    NOTE: the per-node counters (event, send and timer sequences, session epochs) are the
    driver's int64 arrays, read and written here as C integers; the window's sends and
    timers go into int64 column buffers (plus a list of payloads or tags), which
    :meth:`_take_sends` and :meth:`_take_timers` hand over as numpy columns. The pure-Python
    context keeps the same things as Python ints and tuples.
    """

    cdef public object n_nodes, seed
    # NOTE: the event's time, node and cause as C integers, made Python ints only when a
    # handler reads them (most handlers never read ``cause``, many never ``node``)
    cdef long long _now, _node, _cause
    cdef object _now_o, _node_o, _cause_o
    cdef public Py_ssize_t _li
    cdef public long long _evseq
    cdef long long _window_end_c
    cdef public object _nseq, _seqs, _tseqs, _epochs
    cdef long long[::1] _nseq_v, _seq_v, _tseq_v, _ep_v
    cdef public list _rngs, _storage, _late, _obs
    cdef public object _topology, _adj, _deg, _cancelled
    cdef const int[:] _adj_view
    cdef Py_ssize_t _deg_c
    cdef long long _n_c
    cdef unsigned long long _others  # n_nodes - 1, for a draw over every other node
    # sends: rows time, src, dst, per-sender sequence, seq, cause; payloads; and the
    # destinations that are not plain in-range ints (index, object), checked when taken
    cdef public dict _types  # message class -> the log's code of its name (the driver's)
    cdef object _sbuf
    cdef long long[:, ::1] _sv
    cdef Py_ssize_t _ns
    cdef list _smsgs, _sodd
    # timers for later windows: rows time, node, timer id, epoch; tags
    cdef object _tbuf
    cdef long long[:, ::1] _tv
    cdef Py_ssize_t _nt
    cdef list _ttags

    def __init__(self, n_nodes, topology, send_seq, timer_seq, event_seq, epochs,
                 list rngs, cancelled, list storage, seed=0):
        self.n_nodes = n_nodes
        self._n_c = n_nodes
        self.seed = seed
        self.node = -1
        self.now = 0
        self._li = -1
        self.cause = -1
        self._evseq = -1
        self._nseq, self._nseq_v = event_seq, event_seq
        self._window_end_c = 0
        self._seqs, self._seq_v = send_seq, send_seq
        self._tseqs, self._tseq_v = timer_seq, timer_seq
        self._epochs, self._ep_v = epochs, epochs
        for r in rngs:  # random_peer reads them as FastRng without a check
            if type(r) is not FastRng:
                raise TypeError(f"FastContext needs FastRng streams, got {type(r).__name__}")
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
        self._types = {}
        self._sbuf = np.empty((7, 1024), dtype=np.int64)
        self._sv = self._sbuf
        self._ns = 0
        self._smsgs = []
        self._sodd = []
        self._tbuf = np.empty((4, 1024), dtype=np.int64)
        self._tv = self._tbuf
        self._nt = 0
        self._ttags = []
        self._late = []
        self._obs = []

    @property
    def now(self):
        """The current simulated time (ticks)."""
        if self._now_o is None:
            self._now_o = self._now
        return self._now_o

    @now.setter
    def now(self, value):
        self._now = value
        self._now_o = None

    @property
    def node(self):
        """The node whose handler is running."""
        if self._node_o is None:
            self._node_o = self._node
        return self._node_o

    @node.setter
    def node(self, value):
        self._node = value
        self._node_o = None

    @property
    def cause(self):
        """The msg_id or timer id being handled; -1 in lifecycle handlers."""
        if self._cause_o is None:
            self._cause_o = self._cause
        return self._cause_o

    @cause.setter
    def cause(self, value):
        self._cause = value
        self._cause_o = None

    @property
    def _window_end(self):
        return self._window_end_c

    @_window_end.setter
    def _window_end(self, value):
        self._window_end_c = value

    def send(self, dst, msg):
        """Send ``msg`` to ``dst`` (routed at the end of the window); returns the message id."""
        cdef Py_ssize_t li = self._li, i = self._ns
        cdef long long s = self._seq_v[li]
        self._seq_v[li] = s + 1
        cdef long long q = self._nseq_v[li]
        self._nseq_v[li] = q + 1
        cdef long long nd = self._node
        if i == self._sv.shape[1]:
            self._sbuf = np.concatenate([self._sbuf, np.empty_like(self._sbuf)], axis=1)
            self._sv = self._sbuf
        cdef long long[:, ::1] v = self._sv
        v[0, i] = self._now
        v[1, i] = nd
        if type(dst) is int and 0 <= dst < self._n_c:
            v[2, i] = dst
        else:  # checked with the window's other sends, as the pure-Python path does
            v[2, i] = -1
            self._sodd.append((i, dst))
        v[3, i] = s
        v[4, i] = q
        v[5, i] = self._evseq
        code = self._types.get(type(msg))  # NOTE: one dict probe here, not a pass per window
        v[6, i] = -1 if code is None else <long long>code
        self._ns = i + 1
        self._smsgs.append(msg)
        return (nd << 32) | s

    def set_timer(self, delay, tag=None):
        """Fire ``on_timer(ctx, tag)`` after ``delay`` ticks; returns the timer id."""
        if delay < 0:
            raise ValueError(f"timer delay must be >= 0 ticks, got {delay}")
        cdef Py_ssize_t li = self._li, i
        cdef long long tid = self._tseq_v[li]
        cdef long long w
        self._tseq_v[li] = tid + 1
        if type(delay) is int and delay < _TIME_END:
            w = self._now + <long long>delay
            if w < self._window_end_c:
                heapq.heappush(self._late, (w, P_TIMER, self.node, tid, 0, self._ep_v[li], tag))
                return tid
        else:
            when = self.now + delay
            if when < self._window_end_c:
                heapq.heappush(
                    self._late, (when, P_TIMER, self.node, tid, 0, self._ep_v[li], tag)
                )
                return tid
            w = np.array([when], dtype=np.int64)[0]  # what the pure path's column gives
        i = self._nt
        if i == self._tv.shape[1]:
            self._tbuf = np.concatenate([self._tbuf, np.empty_like(self._tbuf)], axis=1)
            self._tv = self._tbuf
        cdef long long[:, ::1] v = self._tv
        v[0, i] = w
        v[1, i] = self._node
        v[2, i] = tid
        v[3, i] = self._ep_v[li]
        self._nt = i + 1
        self._ttags.append(tag)
        return tid

    def cancel_timer(self, timer_id):
        """Cancel a pending timer of this node (an id it was never given is ignored)."""
        if 0 <= timer_id < self._tseq_v[self._li]:
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
        cdef long long q = self._nseq_v[li]
        self._nseq_v[li] = q + 1
        self._obs.append((self.now, self.node, name, value, peer, ref, q, code))

    # --- the driver's side: what the window produced ------------------------------------------

    def _marks(self):
        """How many sends, timers and observations the window has produced so far."""
        return self._ns, self._nt, len(self._obs)

    def _truncate(self, marks):
        """Forget what was produced after ``marks`` (a crashing node's last acts)."""
        cdef Py_ssize_t ns = marks[0], nt = marks[1]
        self._ns = ns
        del self._smsgs[ns:]
        self._sodd = [o for o in self._sodd if o[0] < ns]
        self._nt = nt
        del self._ttags[nt:]
        del self._obs[marks[2]:]

    def _take_sends(self):
        """The window's sends as columns (time, src, dst, sequence, payloads, seq, cause,
        type code), or None; ``dst`` is a list where some destination is not a plain
        in-range int, and a type code is -1 where ``_types`` did not know the class."""
        cdef Py_ssize_t n = self._ns
        if n == 0:
            return None
        cols = self._sbuf[:, :n].copy()
        msgs = self._smsgs
        self._ns = 0
        self._smsgs = []
        dst = cols[2]
        if self._sodd:
            dst = dst.tolist()
            for i, d in self._sodd:
                dst[i] = d
            self._sodd = []
        return cols[0], cols[1], dst, cols[3], msgs, cols[4], cols[5], cols[6]

    def _take_timers(self):
        """Timers set for later windows as int64 columns (time, node, id, epoch) and tags,
        or None."""
        cdef Py_ssize_t n = self._nt
        if n == 0:
            return None
        cols = self._tbuf[:, :n].copy()
        tags = self._ttags
        self._nt = 0
        self._ttags = []
        return (cols[0], cols[1], cols[2], cols[3]), tags

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
        cdef FastRng r = <FastRng>self._rngs[self._li]
        r._ctr += 1
        cdef uint64_t x = _word(r._key, r._ctr)
        cdef long long v
        if self._adj is None:
            v = <long long>raysim_mulhi(x, self._others)
            return v + (1 if v >= self._node else 0)
        return self._adj_view[self._li * self._deg_c
                              + <Py_ssize_t>raysim_mulhi(x, <unsigned long long>self._deg_c)]

    @property
    def storage(self):
        """Stable storage that survives crash-recovery."""
        return self._storage[self._li]


cdef inline bint _before(tuple top, long long t, long long p, long long n, long long k1,
                         long long k2):
    """Whether an in-window timer entry ``(when, prio, node, id, copy, ...)`` sorts before
    the event key ``(t, p, n, k1, k2)`` (``entry[:5] < key``, as the driver compares)."""
    cdef long long key[5]
    cdef long long a
    cdef int i
    key[0], key[1], key[2], key[3], key[4] = t, p, n, k1, k2
    for i in range(5):
        a = top[i]
        if a != key[i]:
            return a < key[i]
    return False


def run_events(driver, FastContext ctx, order, keys, Py_ssize_t m_off, Py_ssize_t t_off,
               long long lo, const long long[::1] m_src, const unsigned char[::1] m_cor,
               const long long[::1] m_id, list m_pl, const long long[::1] t_id,
               const long long[::1] t_ep, list ttags, const long long[::1] l_kind,
               const long long[::1] l_arg, long long[::1] m_seq, long long[::1] t_seq,
               list crashed_m, list skipped_t, list late_rows, list pos):
    """The loop of :meth:`~raysim.engine.pernode.PerNodeDriver.run`, compiled.

    The pure-Python ``run_events`` takes the window's events as ordered columns (priority,
    time, node, local index, row in its source); this one reads them through the window's
    ``order`` from its int64 ``keys`` (time, priority, node, id, copy), ``m_off`` and
    ``t_off`` being where the messages' and the timers' rows start and ``lo`` the shard's
    first node: the same events in the same order, without five gathered columns a window.
    The other arguments are the pure-Python loop's as int64 columns (``m_cor`` as uint8),
    and ``m_seq`` / ``t_seq`` int64 arrays it fills. ``pos[0]`` is left at the index of the
    event being handled when a handler raises (the driver names that event in its error),
    and at -1 when every event ran.
    """
    cdef Py_ssize_t i, n = len(order), li, k
    cdef long long p, q, nd, tid, t
    cdef list protos = driver.protos
    cdef list alive = driver.alive
    cdef long long[::1] nseq = ctx._nseq_v
    cdef long long[::1] epoch = ctx._ep_v
    cdef set cancelled = driver.cancelled
    cdef list late = ctx._late
    cdef const long long[::1] order_v = order
    cdef const long long[::1] k_t = keys[0], k_p = keys[1], k_n = keys[2]
    cdef const long long[::1] k_1 = keys[3], k_2 = keys[4]
    cdef Py_ssize_t j
    pos[0] = 0
    for i in range(n):
        j = order_v[i]
        if late:
            # NOTE: the heap's first timer against the event's key in C; the driver is
            # called (with the key as a tuple) only when some timer is due before it
            if _before(<tuple>late[0], k_t[j], k_p[j], k_n[j], k_1[j], k_2[j]):
                pos[0] = i
                driver._run_late(tuple([int(c[j]) for c in keys]), late_rows)
        p = k_p[j]
        nd = k_n[j]
        li = nd - lo
        if p == _P_MSG:
            k = j - m_off
            q = nseq[li]
            nseq[li] = q + 1
            m_seq[k] = q
            if not alive[li]:
                crashed_m.append(k)
                continue
            if m_cor[k]:  # the receiver's checksum fails: dropped, logged as corrupt
                continue
            t = k_t[j]
            if t != ctx._now:
                ctx._now = t
                ctx._now_o = None
            ctx._node = nd
            ctx._node_o = None
            ctx._li = li
            ctx._cause = m_id[k]
            ctx._cause_o = None
            ctx._evseq = q
            pos[0] = i
            protos[li].on_message(ctx, m_src[k], m_pl[k])
        elif p == _P_TIMER:
            k = j - t_off
            tid = t_id[k]
            if t_ep[k] != epoch[li]:  # set in an earlier session of the node
                if cancelled:
                    cancelled.discard((nd, tid))
                skipped_t.append(k)
                continue
            if cancelled:  # NOTE: the (node, id) key built once (most timers that reach
                key = (nd, tid)  # here were cancelled: requests answered in time)
                if key in cancelled:
                    cancelled.discard(key)
                    skipped_t.append(k)
                    continue
            q = nseq[li]
            nseq[li] = q + 1
            t_seq[k] = q
            t = k_t[j]
            if t != ctx._now:
                ctx._now = t
                ctx._now_o = None
            ctx._node = nd
            ctx._node_o = None
            ctx._li = li
            ctx._cause = tid
            ctx._cause_o = None
            ctx._evseq = q
            pos[0] = i
            protos[li].on_timer(ctx, ttags[k])
        else:
            pos[0] = i
            driver._lifecycle(k_t[j], nd, l_kind[j], l_arg[j])
    pos[0] = -1
    while late:
        driver._run_late(None, late_rows)


# --- pending events (raysim.engine.pending) -------------------------------------------------

cdef class Chunk:
    """:class:`raysim.engine.pending._Chunk`, compiled: the same attributes, and typed views
    of its times and int64 block that :func:`take_chunks` and :func:`join_blocks` read as C."""

    cdef public tuple rows, dtypes
    cdef public object block, times
    cdef public dict other
    cdef public list objs
    cdef public long long last
    cdef public Py_ssize_t pos
    cdef const long long[::1] _t
    cdef const long long[:, ::1] _b
    cdef const long long* _bp  # the block's data (kept alive by ``_b``), rows of ``_bn``
    cdef Py_ssize_t _bn

    def __init__(self, tuple rows, tuple dtypes, block, dict other, times, list objs):
        """A chunk of the columns ``pack`` gave, their sorted times and the object column."""
        self.rows, self.dtypes, self.block, self.other = rows, dtypes, block, other
        self.times = times
        self._t = np.ascontiguousarray(times, dtype=np.int64)
        self._b = block
        self._bn = self._b.shape[1]
        self._bp = &self._b[0, 0] if self._b.shape[0] and self._bn else NULL
        self.last = self._t[self._t.shape[0] - 1]
        self.objs = objs
        self.pos = 0


def join_blocks(list parts, tuple rows, tuple dtypes):
    """The int64 blocks of chunk slices (chunk, from, to) side by side, as
    ``np.concatenate([c.block[:, a:b] ...], axis=1)`` gives them; None unless every chunk
    has the layout ``rows`` and ``dtypes``."""
    cdef Py_ssize_t total = 0, off = 0, a, b, r, j, nrows = len(rows)
    cdef Chunk c
    for part in parts:
        c = <Chunk>part[0]
        if c.rows is not rows and (c.rows != rows or c.dtypes != dtypes):
            return None
        if c.dtypes is not dtypes and c.dtypes != dtypes:
            return None
        total += <Py_ssize_t>part[2] - <Py_ssize_t>part[1]
    out = np.empty((nrows, total), dtype=np.int64)
    cdef long long[:, ::1] ov = out
    cdef const long long* bp
    cdef Py_ssize_t bn
    for part in parts:  # NOTE: the chunks' data pointers, not a memoryview of each
        c, a, b = part
        bp, bn = c._bp, c._bn
        for r in range(nrows):
            for j in range(b - a):
                ov[r, off + j] = bp[r * bn + a + j]
        off += b - a
    return out


# --- building chunks and keeping them in a heap (raysim.engine.pending) ---------------------

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdlib cimport free, malloc, realloc


cdef struct SortKeys:
    const long long* k[5]  # the key columns, most significant first
    int n


cdef inline bint _row_less(SortKeys* keys, Py_ssize_t a, Py_ssize_t b):
    """Whether row ``a`` sorts strictly before row ``b`` by the key columns."""
    cdef int i
    for i in range(keys.n):
        if keys.k[i][a] != keys.k[i][b]:
            return keys.k[i][a] < keys.k[i][b]
    return False


cdef void _merge_sort(SortKeys* keys, Py_ssize_t* idx, Py_ssize_t* tmp, Py_ssize_t n):
    """Sort the rows ``idx[0:n]`` by ``keys``, stable (equal rows keep their order)."""
    cdef Py_ssize_t width, lo, mid, hi, i, j, k
    cdef Py_ssize_t* a = idx
    cdef Py_ssize_t* b = tmp
    cdef Py_ssize_t* swap
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if _row_less(keys, a[j], a[i]):  # strictly less: ties take the earlier row
                    b[k] = a[j]
                    j += 1
                else:
                    b[k] = a[i]
                    i += 1
                k += 1
            while i < mid:
                b[k] = a[i]
                i += 1
                k += 1
            while j < hi:
                b[k] = a[j]
                j += 1
                k += 1
            lo = hi
        swap = a
        a = b
        b = swap
        width *= 2
    if a != idx:
        for i in range(n):
            idx[i] = a[i]


cdef void _counting_sort(const long long* t, long long t0, Py_ssize_t* idx,
                         Py_ssize_t* count, Py_ssize_t span, Py_ssize_t n):
    """``idx[0:n]``: the rows in stable order of ``t`` (all in ``t0 .. t0 + span - 1``),
    ``count`` a scratch of ``span + 1`` entries."""
    cdef Py_ssize_t i, c, total = 0
    for i in range(span + 1):
        count[i] = 0
    for i in range(n):
        count[t[i] - t0] += 1
    for i in range(span):  # first position of each time
        c = count[i]
        count[i] = total
        total += c
    for i in range(n):  # rows in input order within a time: stable
        idx[count[t[i] - t0]] = i
        count[t[i] - t0] += 1


def make_chunk(tuple cols, list objs):
    """``Pending.add``'s chunk, compiled: the columns packed into one int64 block, put in
    stable time order (the order ``np.argsort(kind="stable")`` gives: a stable sort's
    permutation is unique), as a :class:`Chunk`; None where some column is not packed
    (a float or 2-D column: the Python path keeps those aside)."""
    cdef Py_ssize_t ncols = len(cols), n = len(cols[0]), r, j
    for c in cols:
        if c.ndim != 1 or not (c.dtype.kind in "ib" or (c.dtype.kind == "u" and c.dtype.itemsize < 8)):
            return None
    block = np.empty((ncols, n), dtype=np.int64)
    cdef long long[:, ::1] bv = block
    cdef const long long[:] cv
    cdef const int[:] iv
    cdef const signed char[:] sv8
    cdef const unsigned char[:] uv8
    for r in range(ncols):  # NOTE: C loops for the engine's dtypes, numpy for the rest
        c = cols[r]
        dt = c.dtype
        if dt == np.int64:
            cv = c
            for j in range(n):
                bv[r, j] = cv[j]
        elif dt == np.int32:
            iv = c
            for j in range(n):
                bv[r, j] = iv[j]
        elif dt == np.int8:
            sv8 = c
            for j in range(n):
                bv[r, j] = sv8[j]
        elif dt == np.bool_ or dt == np.uint8:
            uv8 = c.view(np.uint8)
            for j in range(n):
                bv[r, j] = uv8[j]
        else:
            block[r] = c
    cdef bint ordered = True
    for j in range(1, n):
        if bv[0, j] < bv[0, j - 1]:
            ordered = False
            break
    cdef Py_ssize_t* idx
    cdef Py_ssize_t* tmp
    cdef long long[:, ::1] sv
    cdef long long t0, t1
    cdef Py_ssize_t span
    cdef SortKeys by_time
    if not ordered:
        t0 = t1 = bv[0, 0]
        for j in range(n):
            if bv[0, j] < t0:
                t0 = bv[0, j]
            elif bv[0, j] > t1:
                t1 = bv[0, j]
        span = <Py_ssize_t>(t1 - t0 + 1) if t1 - t0 < (1 << 20) else -1
        if n <= 4096 or 0 < span <= 4 * n:
            idx = <Py_ssize_t*>malloc((2 * n + (span if 0 < span <= 4 * n else 0) + 1)
                                      * sizeof(Py_ssize_t))
            if idx == NULL:
                raise MemoryError()
            tmp = idx + n
            if 0 < span <= 4 * n:  # NOTE: a window's batch spans a few delays: a counting sort
                _counting_sort(&bv[0, 0], t0, idx, tmp + n, span, n)
            else:
                for j in range(n):
                    idx[j] = j
                by_time.k[0] = &bv[0, 0]
                by_time.n = 1
                _merge_sort(&by_time, idx, tmp, n)
            out = np.empty((ncols, n), dtype=np.int64)
            sv = out
            for r in range(ncols):
                for j in range(n):
                    sv[r, j] = bv[r, idx[j]]
            if objs:
                objs = [objs[idx[j]] for j in range(n)]
            free(idx)
        else:  # (as pending._stable_order: a radix sort where the times span < 2^16)
            t = block[0]
            t0 = int(t.min())
            if int(t.max()) - t0 < (1 << 16):
                order = np.argsort((t - t0).astype(np.uint16), kind="stable")
            else:
                order = np.argsort(t, kind="stable")
            out = block.take(order, axis=1)
            if objs:
                objs = list(map(objs.__getitem__, order.tolist()))
        block = out
    key = tuple([c.dtype for c in cols])
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _LAYOUTS[key] = (tuple(range(ncols)), key)
    # NOTE: one (rows, dtypes) pair per layout, shared: join_blocks tells a layout by identity
    return Chunk(layout[0], layout[1], block, {}, block[0], objs)


_LAYOUTS = {}  # dtypes of a batch's columns -> the (rows, dtypes) its chunks share


cdef class ChunkHeap:
    """The pending pool's heap of chunks, keyed by (earliest pending time, arrival number):
    ``heapq`` over ``(time, seq, chunk)`` tuples, with the keys as C integers and the chunks
    as C pointers (a window pops every chunk with something due, dozens of timer chunks
    among hundreds, and puts back those not used up). Keys are unique, so the order chunks
    come out in is the same."""

    cdef long long* _t
    cdef long long* _s
    cdef PyObject** _c  # the chunks, one reference each held by the heap
    cdef Py_ssize_t _n, _cap

    def __cinit__(self):
        self._cap = 64
        self._n = 0
        self._t = <long long*>malloc(self._cap * sizeof(long long))
        self._s = <long long*>malloc(self._cap * sizeof(long long))
        self._c = <PyObject**>malloc(self._cap * sizeof(PyObject*))
        if self._t == NULL or self._s == NULL or self._c == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self._n):
            Py_XDECREF(self._c[i])
        free(self._t)
        free(self._s)
        free(self._c)

    def __len__(self):
        return self._n

    def chunks(self):
        """The chunks in the heap (in no particular order)."""
        return [<object>self._c[i] for i in range(self._n)]

    def min_time(self):
        """The smallest key's time, or None when empty."""
        return self._t[0] if self._n else None

    cdef inline bint _less(self, Py_ssize_t i, Py_ssize_t j):
        return self._t[i] < self._t[j] or (self._t[i] == self._t[j] and self._s[i] < self._s[j])

    cdef inline void _swap(self, Py_ssize_t i, Py_ssize_t j):
        cdef long long x = self._t[i]
        self._t[i] = self._t[j]
        self._t[j] = x
        x = self._s[i]
        self._s[i] = self._s[j]
        self._s[j] = x
        cdef PyObject* o = self._c[i]
        self._c[i] = self._c[j]
        self._c[j] = o

    cdef void _down(self, Py_ssize_t i):
        cdef Py_ssize_t child, n = self._n
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and self._less(child + 1, child):
                child += 1
            if not self._less(child, i):
                break
            self._swap(i, child)
            i = child

    cpdef push(self, long long t, long long s, Chunk c):
        """Add ``c`` under the key (t, s)."""
        cdef Py_ssize_t i = self._n, parent
        if i == self._cap:
            self._cap *= 2
            self._t = <long long*>realloc(self._t, self._cap * sizeof(long long))
            self._s = <long long*>realloc(self._s, self._cap * sizeof(long long))
            self._c = <PyObject**>realloc(self._c, self._cap * sizeof(PyObject*))
            if self._t == NULL or self._s == NULL or self._c == NULL:
                raise MemoryError()
        Py_INCREF(c)
        self._t[i] = t
        self._s[i] = s
        self._c[i] = <PyObject*>c
        self._n = i + 1
        while i > 0:
            parent = (i - 1) >> 1
            if not self._less(i, parent):
                break
            self._swap(i, parent)
            i = parent


def take_chunks(ChunkHeap heap, long long end):
    """``Pending._take_parts``, compiled: the slices (chunk, from, to) due before ``end`` in
    the order they are taken, and their objects; the chunks' positions move past them.

    NOTE: the first chunk is read in place; one not used up takes its new key where it is
    and sinks (heapq's ``heapreplace``), the same order as popping and pushing it back."""
    cdef list parts = []
    cdef list objs = []
    cdef Chunk c
    cdef Py_ssize_t pos, k, n, lo, hi, mid, j
    cdef PyObject* top
    while heap._n and heap._t[0] < end:
        c = <Chunk>heap._c[0]
        pos = c.pos
        n = c._t.shape[0]
        if c.last < end:
            k = n
        else:  # the first time >= end (those before ``pos`` are all below it)
            lo, hi = pos, n
            while lo < hi:
                mid = (lo + hi) >> 1
                if c._t[mid] < end:
                    lo = mid + 1
                else:
                    hi = mid
            k = lo
        parts.append((c, pos, k))
        if c.objs:
            if pos == 0 and k == n:
                objs.extend(c.objs)
            else:
                for j in range(pos, k):
                    objs.append(c.objs[j])
        c.pos = k
        if k < n:  # its next time is its new key (the arrival number stays)
            heap._t[0] = c._t[k]
            heap._down(0)
        else:  # used up: the last entry takes the root's place
            top = heap._c[0]
            heap._n -= 1
            if heap._n:
                heap._t[0] = heap._t[heap._n]
                heap._s[0] = heap._s[heap._n]
                heap._c[0] = heap._c[heap._n]
                heap._down(0)
            Py_XDECREF(top)
    return parts, objs


def join_columns(list parts, Py_ssize_t ncols):
    """``pending._concat`` for chunks whose every column is packed (``other`` empty) and
    share one layout: each column of the slices (chunk, from, to) joined, in its own dtype
    (int64 columns are rows of one joined block); None for any other layout."""
    first = <Chunk>parts[0][0]
    rows, dtypes = first.rows, first.dtypes
    if first.other or len(rows) != ncols:
        return None
    block = join_blocks(parts, rows, dtypes)
    if block is None:
        return None
    cdef const long long[:, ::1] bv = block
    cdef Py_ssize_t n = bv.shape[1], r, j
    cdef int[::1] iv
    cdef signed char[::1] sv8
    cdef unsigned char[::1] uv8
    out = []
    for r in range(ncols):
        dt = dtypes[r]
        if dt == np.int64:
            out.append(block[r])
        elif dt == np.int32:
            a = np.empty(n, dtype=np.int32)
            iv = a
            for j in range(n):
                iv[j] = <int>bv[r, j]
            out.append(a)
        elif dt == np.int8:
            a = np.empty(n, dtype=np.int8)
            sv8 = a
            for j in range(n):
                sv8[j] = <signed char>bv[r, j]
            out.append(a)
        elif dt == np.bool_:
            a = np.empty(n, dtype=np.bool_)
            uv8 = a.view(np.uint8)
            for j in range(n):
                uv8[j] = bv[r, j] != 0
            out.append(a)
        else:
            out.append(block[r].astype(dt))
    return out


# --- the window's total order (raysim.engine.order) ---------------------------------------

def lexorder(time, prio, node, k1, k2):
    """``np.lexsort((k2, k1, node, prio, time))`` for a window's int64 key columns, by a
    stable merge sort in C (a stable sort's permutation is unique: lexsort's)."""
    cdef const long long[::1] t = time, p = prio, nd = node, a1 = k1, a2 = k2
    cdef Py_ssize_t n = t.shape[0], i
    out = np.arange(n, dtype=np.int64)
    if n < 2:
        return out
    cdef long long[::1] o = out
    cdef Py_ssize_t* buf = <Py_ssize_t*>malloc(2 * n * sizeof(Py_ssize_t))
    if buf == NULL:
        raise MemoryError()
    cdef SortKeys keys
    keys.k[0], keys.k[1], keys.k[2], keys.k[3], keys.k[4] = &t[0], &p[0], &nd[0], &a1[0], &a2[0]
    keys.n = 5
    for i in range(n):
        buf[i] = i
    _merge_sort(&keys, buf, buf + n, n)
    for i in range(n):
        o[i] = buf[i]
    free(buf)
    return out


def window_keys(life_t, life_n, life_s, m_t, m_dst, m_id, m_copy, t_t, t_n, t_id):
    """``order_window``'s key columns (time, prio, node, id, copy) over the lifecycle
    rows, then the messages, then the timers, filled in one pass; None unless every
    column is int64 (the copies int8)."""
    cdef const long long[::1] lt, ln, ls, mt, md, mi, tt, tn, ti
    cdef const signed char[::1] mc
    try:
        lt, ln, ls = life_t, life_n, life_s
        mt, md, mi, mc = m_t, m_dst, m_id, m_copy
        tt, tn, ti = t_t, t_n, t_id
    except (ValueError, TypeError):
        return None
    cdef Py_ssize_t nl = lt.shape[0], nm = mt.shape[0], nt = tt.shape[0], i, j
    cdef Py_ssize_t n = nl + nm + nt
    cols = [np.empty(n, dtype=np.int64) for _ in range(5)]
    cdef long long[::1] t = cols[0], p = cols[1], nd = cols[2], k1 = cols[3], k2 = cols[4]
    for i in range(nl):
        t[i] = lt[i]
        p[i] = _P_NODE
        nd[i] = ln[i]
        k1[i] = ls[i]
        k2[i] = 0
    for i in range(nm):
        j = nl + i
        t[j] = mt[i]
        p[j] = _P_MSG
        nd[j] = md[i]
        k1[j] = mi[i]
        k2[j] = mc[i]
    for i in range(nt):
        j = nl + nm + i
        t[j] = tt[i]
        p[j] = _P_TIMER
        nd[j] = tn[i]
        k1[j] = ti[i]
        k2[j] = 0
    return cols
