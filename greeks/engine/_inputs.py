"""Input normalisation shared by the pricing and implied-volatility kernels.

Everything here is about turning caller input (scalars, lists, numpy arrays of any broadcastable
shapes, option types spelled in several ways) into the flat float64 arrays the kernels work on,
plus the chunking/threading helper that runs a kernel over a long array.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
#: A kernel operand after preparation: a Python float (broadcast scalar) or a flat float64 array.
Operand = float | FloatArray

MODELS = ("black_scholes", "black76")

CALL_NAMES = ("call", "c", "ce")
PUT_NAMES = ("put", "p", "pe")
VALID_OPTION_TYPES = (*CALL_NAMES, *PUT_NAMES)

# Elements per kernel call. Big enough that the per-call Python overhead (~60 ufunc dispatches) is
# small, small enough that the ~15 scratch buffers of one chunk stay in the L2/L3 cache.
CHUNK = 16_384
# Arrays shorter than this are never split across threads: the thread hand-off would cost more
# than it saves.
PARALLEL_MIN = 262_144
# Auto mode never uses more threads than this: beyond it memory bandwidth, not CPUs, is the limit.
MAX_AUTO_THREADS = 8


def check_model(model: str) -> bool:
    """Return True for black76, False for black_scholes; ValueError for anything else."""
    if model == "black_scholes":
        return False
    if model == "black76":
        return True
    raise ValueError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")


def _unknown_option_type(values: Sequence[object]) -> ValueError:
    shown = ", ".join(repr(v) for v in list(values)[:5])
    return ValueError(
        f"unknown option type(s) {shown}; valid values (case-insensitive): "
        f"{', '.join(VALID_OPTION_TYPES)}, or a boolean is_call array, or integers 1 (call) / 0 or -1 (put)"
    )


def _is_call_from_str(value: str) -> bool:
    low = value.lower()
    if low in CALL_NAMES:
        return True
    if low in PUT_NAMES:
        return False
    raise _unknown_option_type([value])


def _words(token: str) -> tuple[int, int]:
    """A token as two 64-bit words of space-padded UTF-32 code points (little-endian)."""
    cps = [ord(c) for c in token.ljust(4)]
    return cps[0] | (cps[1] << 32), cps[2] | (cps[3] << 32)


_SPACE2 = np.uint64(0x0000002000000020)


def _is_call_from_unicode_array(arr: np.ndarray) -> np.ndarray:
    """Vectorised parse of a numpy unicode array without a Python loop or a sort.

    The strings are viewed as UTF-32 code points. OR-ing 0x20 into a code point lower-cases an ASCII
    letter (no other code point can then equal a lower-case letter) and turns numpy's zero padding
    into a space, so after padding every string to four code points it is two uint64 words that
    are compared with the six valid tokens. Real spaces are rejected first, as they would be
    indistinguishable from padding.
    """
    flat = np.ascontiguousarray(arr).reshape(-1)
    width = arr.dtype.itemsize // 4
    if width == 0:
        raise _unknown_option_type([""] if flat.size else [])
    codes = flat.view(np.uint32).reshape(-1, width)
    if width > 4:
        extra = codes[:, 4:].any(axis=1)
        if extra.any():
            raise _unknown_option_type(np.unique(flat[extra]).tolist())
        flat = flat.astype("<U4")
        width = 4
        codes = flat.view(np.uint32).reshape(-1, width)
    elif width == 3:
        flat = flat.astype("<U4")
        width = 4
        codes = flat.view(np.uint32).reshape(-1, width)
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        is_call = np.array([_is_call_from_str(str(v)) for v in flat], dtype=bool)
        return is_call.reshape(arr.shape)
    if width == 1:
        low = codes[:, 0] | np.uint32(0x20)
        is_call = low == ord("c")
        ok = is_call | (low == ord("p"))
    else:
        spaces = (codes == 0x20).any(axis=1)
        if spaces.any():
            raise _unknown_option_type(np.unique(flat[spaces]).tolist())
        words = flat.view(np.uint64).reshape(-1, width // 2) | _SPACE2
        w0 = words[:, 0]
        w1 = words[:, 1] if width == 4 else None

        def match(tokens: tuple[str, ...]) -> np.ndarray:
            hit = np.zeros(w0.shape[0], dtype=bool)
            for token in tokens:
                if width == 2 and len(token) > 2:
                    continue
                k0, k1 = _words(token)
                eq = w0 == np.uint64(k0)
                if w1 is not None:
                    eq &= w1 == np.uint64(k1)
                hit |= eq
            return hit

        is_call = match(CALL_NAMES)
        ok = is_call | match(PUT_NAMES)
    if not ok.all():
        raise _unknown_option_type(np.unique(flat[~ok]).tolist())
    return is_call.reshape(arr.shape)


def option_is_call(option_type: Any) -> bool | np.ndarray:
    """Map an option type (scalar or array) to True (call) / False (put).

    Accepted: the strings "call"/"put", "c"/"p", "CE"/"PE" in any letter case (scalars, lists or
    numpy string/object arrays; no surrounding spaces); a boolean ``is_call`` scalar or array
    (True = call); integers 1 (call) and 0 or -1 (put). Anything else is a caller error and raises
    ``ValueError`` naming the valid values. Returns a bool for a scalar input, otherwise a boolean
    array with the input's shape.
    """
    if isinstance(option_type, str):
        return _is_call_from_str(option_type)
    if isinstance(option_type, bool | np.bool_):
        return bool(option_type)
    arr = np.asarray(option_type)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=bool)
    kind = arr.dtype.kind
    if kind == "S":
        arr = arr.astype(str)
        kind = "U"
    if kind == "O":
        flat = arr.reshape(-1)
        if not all(isinstance(v, str) for v in flat):
            raise _unknown_option_type([v for v in flat if not isinstance(v, str)])
        arr = arr.astype(str) if arr.size else arr.astype("U1")
        kind = "U"
    if kind == "U":
        is_call = _is_call_from_unicode_array(arr)
    elif kind == "b":
        is_call = arr
    elif kind in "iu":
        valid = np.isin(arr, (-1, 0, 1))
        if not valid.all():
            raise _unknown_option_type(np.unique(arr[~valid]).tolist())
        is_call = arr == 1
    else:
        raise _unknown_option_type([option_type])
    return bool(is_call) if is_call.ndim == 0 else is_call


def option_sign(option_type: Any) -> float | FloatArray:
    """+1.0 for calls and -1.0 for puts; accepts everything :func:`option_is_call` accepts."""
    is_call = option_is_call(option_type)
    if isinstance(is_call, bool):
        return 1.0 if is_call else -1.0
    return np.where(is_call, 1.0, -1.0)


def sign_chunk(is_call: bool | np.ndarray, lo: int, hi: int) -> Operand:
    """+1.0/-1.0 for the calls/puts of one chunk (a float when the type is a scalar)."""
    if isinstance(is_call, bool | np.bool_):
        return 1.0 if is_call else -1.0
    return np.where(is_call[lo:hi], 1.0, -1.0)


def broadcast_flat(
    option_type: Any, values: Sequence[Any]
) -> tuple[tuple[int, ...], bool | np.ndarray, list[Operand]]:
    """Parse the option type and broadcast it with the numeric inputs.

    Returns the common shape, the flat is_call (a bool when it is the same for every element, else
    a 1-D bool array) and the flat numeric operands: size-one inputs become Python floats (the
    kernels then take their cheap scalar paths), the others contiguous 1-D float64 arrays of the
    broadcast size (copied only when an input had to be broadcast or converted).
    """
    is_call = option_is_call(option_type)
    arrays = [v if isinstance(v, float) else np.asarray(v, dtype=np.float64) for v in values]
    shape = np.broadcast_shapes(np.shape(is_call), *(np.shape(a) for a in arrays))
    size = math.prod(shape)

    def flatten(a: np.ndarray) -> np.ndarray:
        if a.shape == shape:
            return np.ascontiguousarray(a).reshape(-1)
        return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)

    flat: list[Operand] = []
    for a in arrays:
        if isinstance(a, float):
            flat.append(a)
        elif a.size == 1 and size != 0:
            flat.append(float(a.reshape(-1)[0]))
        else:
            flat.append(flatten(a))
    flat_call: bool | np.ndarray
    if isinstance(is_call, bool):
        flat_call = is_call
    elif is_call.size == 1 and size != 0:
        flat_call = bool(is_call.reshape(-1)[0])
    else:
        flat_call = flatten(is_call)
    return shape, flat_call, flat


def take(value: Operand, index: npt.NDArray[np.intp]) -> Operand:
    """Subset an operand (scalars pass through)."""
    return value if isinstance(value, float) else value.take(index)


def collapse_constant(value: Operand) -> Operand:
    """A chunk whose elements are all equal (one expiry, one rate) as a Python float.

    The kernels then compute exp/sqrt of it once instead of per option. The O(1) first/last test
    rejects varying chunks almost for free; NaN never compares equal, so it is never collapsed.
    """
    if isinstance(value, float) or value.shape[0] == 0:
        return value
    first = value[0]
    if first != value[-1] or not (value.min() == first and value.max() == first):
        return value
    return float(first)


def chunk_of(value: Operand, lo: int, hi: int) -> Operand:
    return value if isinstance(value, float) else value[lo:hi]


def thread_count(n: int, threads: int | None) -> int:
    """Number of threads to use for ``n`` elements.

    ``threads=None`` (auto) uses every CPU this process may run on (at most ``MAX_AUTO_THREADS``),
    but only for arrays of at least ``PARALLEL_MIN`` elements; an explicit integer is honoured
    (capped so each thread gets at least one chunk).
    """
    if threads is None:
        if n < PARALLEL_MIN:
            return 1
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            threads = os.cpu_count() or 1
        threads = min(threads, MAX_AUTO_THREADS)
    if threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    return max(1, min(threads, -(-n // CHUNK)))


class _SharedPool:
    """One lazily created, process-wide thread pool, grown on demand and reset after fork.

    A forked child (e.g. a prefork Celery worker) inherits the executor object but not its threads,
    so submitting to it would wait forever: the child starts with no pool.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._size = 0

    def get(self, size: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._size < size:
                # the old executor (if any) is left to finish what it has; it is not shut down
                # under a caller that may still be submitting to it
                self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="greeks-engine")
                self._size = size
            return self._executor

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._executor = None
        self._size = 0


_POOL = _SharedPool()
os.register_at_fork(after_in_child=_POOL.forget)


def run_chunked(n: int, threads: int, work: Callable[[int, int], None], chunk: int = CHUNK) -> None:
    """Call ``work(lo, hi)`` over ``[0, n)`` in chunks, spread over ``threads`` threads.

    numpy and scipy.special ufuncs release the GIL inside their loops, so the threads really run in
    parallel. Chunks are handed out one at a time from a shared counter (not in fixed halves), so a
    thread on a busy CPU simply does fewer of them. Each ``work`` call must only write its own
    ``[lo, hi)`` slice of the outputs; results do not depend on which thread ran which chunk.
    The calling thread works too, so ``threads`` = 2 uses one pool thread.
    """
    if n == 0:
        return
    n_chunks = -(-n // chunk)
    if threads <= 1 or n_chunks == 1:
        for start in range(0, n, chunk):
            work(start, min(start + chunk, n))
        return
    counter = itertools.count()  # next() on it is atomic under the GIL

    def drain() -> None:
        while (i := next(counter)) < n_chunks:
            work(i * chunk, min((i + 1) * chunk, n))

    pool = _POOL.get(threads - 1)
    futures = [pool.submit(drain) for _ in range(threads - 1)]
    try:
        drain()
    finally:
        for f in futures:
            f.result()
