"""Memory diagnosis for the soak bench (``BENCH_SOAK_TRACE=DIR``, benchmarks/bench_soak.py): on the
PYTHONPATH of the topology's processes only then. Every ``BENCH_SOAK_TRACE_EVERY`` seconds
(default 60):

* every REST (granian or gunicorn) worker appends glibc's ``mallinfo2()`` to ``DIR/malloc-<pid>.csv``: the heap's
  bytes in use (``uordblks``) and free (``fordblks``), ``mmap``-ed blocks (``hblkhd``), and its
  anonymous RSS. In-use bytes flat while RSS rises = the allocator keeping freed memory, not a leak;
* the first worker forked, when ``BENCH_SOAK_TRACE_FRAMES`` (default 8) is not 0, also runs
  tracemalloc and writes ``DIR/snap-<seconds>.pickle`` (a snapshot, taken *before* any collection)
  and ``DIR/gc-<seconds>.json`` (live objects by type, and under ``"_unreachable"`` what the
  collection that follows the snapshot freed). Compare snapshots with ``Snapshot.compare_to``.
  Collecting first would hide garbage waiting for a full collection, which is how Flower's growth
  went unexplained for a session (docs/reliability.md "Soak"). Tracing costs memory: such a run
  diagnoses, it does not judge.
"""

import os

_DIR = os.environ.get("BENCH_SOAK_TRACE")


def _anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def _worker_forked() -> None:
    import sys

    if not any(server in sys.argv[0] for server in ("granian", "gunicorn")):
        return
    import ctypes
    import threading
    import time

    class _Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                         "fordblks", "keepcost")
        ]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    frames = int(os.environ.get("BENCH_SOAK_TRACE_FRAMES", "8"))
    traced = False
    if frames:
        try:
            fd = os.open(os.path.join(_DIR, "traced.pid"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # another worker is the traced one
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            traced = True
    if traced:
        import tracemalloc

        tracemalloc.start(frames)
    every = float(os.environ.get("BENCH_SOAK_TRACE_EVERY", "60"))
    began = time.monotonic()
    malloc_log = os.path.join(_DIR, f"malloc-{os.getpid()}.csv")
    with open(malloc_log, "w") as f:
        f.write("t_s,anon_kb,arena_kb,in_use_kb,free_kb,mmap_kb,releasable_kb\n")

    def loop() -> None:
        while True:
            time.sleep(every)
            t = int(time.monotonic() - began)
            m = libc.mallinfo2()
            with open(malloc_log, "a") as f:
                f.write(f"{t},{_anon_kb()},{m.arena // 1024},{m.uordblks // 1024},{m.fordblks // 1024},"
                        f"{m.hblkhd // 1024},{m.keepcost // 1024}\n")  # fmt: skip
            if traced:
                import collections
                import gc
                import json
                import tracemalloc

                # The snapshot first: a collection before it would free the very garbage that
                # is waiting for one, and the growth would look like nothing.
                tracemalloc.take_snapshot().dump(os.path.join(_DIR, f"snap-{t:06d}.pickle"))
                unreachable = gc.collect()
                counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
                with open(os.path.join(_DIR, f"gc-{t:06d}.json"), "w") as f:
                    json.dump({"_unreachable": unreachable, **dict(counts.most_common(300))}, f)

    threading.Thread(target=loop, name="soak-trace", daemon=True).start()


if _DIR:
    os.register_at_fork(after_in_child=_worker_forked)
