"""Acceptance campaign for the readers under hostile input (issue 15).

For every format (and the headerless variants of .pts and CSV), ``--n`` damaged copies
of a file made by the writers are read, each with ``format=`` forced and with
``format="auto"``, in a forked worker with per-call limits: ``--timeout`` seconds
(SIGALRM; a call past it is a hang) and ``--memory`` MiB of Python/NumPy allocation
peak (tracemalloc; above it is runaway memory), under an address-space limit of
``--rlimit`` MiB so that a runaway allocation cannot take the machine. The damage
functions and the contract are those of ``tests/test_fuzz_readers.py``: every outcome
must be a FormatError or values the file held.

    python benchmarks/fuzz_readers.py --n 400 --seed 15 [--json]

Prints a table per format: mutations, outcomes (FormatError / read), and the failures
by class (crash type, hang, memory, changed values), which must all be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_fuzz_readers as fz  # noqa: E402  (the damage functions and the contract)


class _Pick:
    def __init__(self, rng):
        self.rng = rng

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def choice(self, seq):
        return self.rng.choice(list(seq))


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _one(target, fmt, original, mutation, auto, timeout, memory_mb):
    """Return the outcome class of one read."""
    tracemalloc.reset_peak()
    signal.alarm(timeout)
    try:
        outcome = fz.check_outcome(target, fmt, original, mutation, auto=auto)
    except _Hang:
        return "hang"
    except AssertionError:
        return "changed values"
    except MemoryError:
        return "crash: MemoryError"
    except Exception as exc:  # noqa: BLE001 -- the classes are what the campaign counts
        return f"crash: {type(exc).__name__}"
    finally:
        signal.alarm(0)
    if tracemalloc.get_traced_memory()[1] > memory_mb * 2 ** 20:
        return "runaway memory"
    return "FormatError" if outcome == "error" else "read"


def _worker(cases, folder, kind, args, wfd):
    resource.setrlimit(resource.RLIMIT_AS, (args.rlimit * 2 ** 20, resource.RLIM_INFINITY))
    signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    path, fmt, original = fz.make_sample(kind, folder)
    data = path.read_bytes()
    target = Path(folder) / ("x" + path.suffix)
    with os.fdopen(wfd, "w", buffering=1) as out:
        for i, (mutation, seed) in cases:
            damaged = fz.mutate(data, kind, mutation, _Pick(random.Random(seed)))
            target.write_bytes(damaged)
            for auto in (False, True):
                t0 = time.perf_counter()
                result = _one(target, fmt, original, mutation, auto, args.timeout, args.memory)
                out.write(json.dumps([i, mutation, auto, result, time.perf_counter() - t0, seed]) + "\n")


def run_kind(kind, args, rng):
    muts = fz.BYTE_MUTATIONS if kind in fz.BINARY else fz.MUTATIONS
    cases = [(i, (rng.choice(muts), rng.getrandbits(64))) for i in range(args.n)]
    results = {}
    todo = list(cases)
    with tempfile.TemporaryDirectory() as folder:
        while todo:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    _worker([(i, c) for i, c in todo], folder, kind, args, w)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            os.close(w)
            with os.fdopen(r) as fh:
                for line in fh:
                    i, mutation, auto, result, dt, seed = json.loads(line)
                    results[(i, auto)] = (mutation, result, dt, seed)
            _, status = os.waitpid(pid, 0)
            done = {i for i, _ in results}
            left = [(i, c) for i, c in todo if i not in done]
            if left and left == todo:
                break
            if left:  # the worker died in the middle of a case: record it, go on after it
                i, (mutation, _) = left[0]
                results[(i, False)] = results[(i, True)] = (mutation, f"died (status {status})", 0.0,
                                                             left[0][1][1])
                left = left[1:]
            todo = left
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400, help="mutations per format (default 400)")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--timeout", type=int, default=10, help="seconds per read before it counts as a hang")
    p.add_argument("--memory", type=int, default=256, help="MiB of allocation peak per read counted as runaway")
    p.add_argument("--rlimit", type=int, default=4096, help="address-space limit of the worker, MiB")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    summary = {}
    t0 = time.perf_counter()
    for kind in fz.SAMPLES:
        res = run_kind(kind, args, rng)
        outcomes = Counter(r for _, r, _, _ in res.values())
        failures = {k: v for k, v in outcomes.items() if k not in ("FormatError", "read")}
        bad = [(m, seed, auto) for (i, auto), (m, r, _, seed) in sorted(res.items()) if r not in ("FormatError", "read")]
        slowest = max(dt for _, _, dt, _ in res.values())
        summary[kind] = {"mutations": args.n, "reads": len(res), "FormatError": outcomes["FormatError"],
                         "read": outcomes["read"], "failures": failures,
                         # (mutation, seed of random.Random for mutate(), auto): enough to replay one
                         "failing_examples": bad[:5], "slowest_read_s": round(slowest, 3)}
        print(f"{kind:15s} {args.n} mutations, {len(res)} reads: FormatError {outcomes['FormatError']}, "
              f"read {outcomes['read']}, failures {failures or 0}, slowest read {slowest:.3f} s", flush=True)
    total = sum(sum(s["failures"].values()) for s in summary.values())
    print(f"total failures: {total} ({time.perf_counter() - t0:.0f} s)")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
