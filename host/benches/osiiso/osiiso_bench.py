#!/usr/bin/env python3
"""B10's osiiso side: 50,000 trivial tasks (x * 2) on an osiiso 1.1.0 queue.

    python osiiso_bench.py --backend thread|async|process --workers N --inputs FILE

FILE holds one integer per line. The tasks go through the documented pattern
(`with Queue(workers=N) as q: hs = q.map(fn, xs); q.run()`), every value is checked against
2 * x in input order, and one JSON line is printed:

    {"backend", "workers", "tasks", "seconds", "tasks_per_s", "python", "osiiso"}

"seconds" covers queue construction through collecting the results; it excludes interpreter
start-up, `import osiiso` and reading the inputs. The async backend runs a coroutine
function (a plain function there would go through asyncio.to_thread, much slower).
"""

import argparse
import json
import sys
import time
from importlib.metadata import version

import osiiso


# Module level, so that ProcessQueue can pickle it.
def double(x):
    return x * 2


async def adouble(x):
    return x * 2


def run_blocking(queue_type, xs, workers):
    with queue_type(workers=workers) as q:
        handles = q.map(double, xs)
        q.run()
    return [h.value() for h in handles]


def run_async(xs, workers):
    async def main():
        async with osiiso.AsyncQueue(workers=workers) as q:
            handles = q.map(adouble, xs)
            await q.run()
        return [h.value() for h in handles]

    return osiiso.run(main())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", required=True, choices=["thread", "async", "process"])
    ap.add_argument("--workers", required=True, type=int)
    ap.add_argument("--inputs", required=True)
    a = ap.parse_args()

    with open(a.inputs) as f:
        xs = [int(line) for line in f if line.strip()]

    start = time.perf_counter()
    if a.backend == "thread":
        values = run_blocking(osiiso.ThreadQueue, xs, a.workers)
    elif a.backend == "process":
        values = run_blocking(osiiso.ProcessQueue, xs, a.workers)
    else:
        values = run_async(xs, a.workers)
    seconds = time.perf_counter() - start

    if values != [x * 2 for x in xs]:
        sys.exit(f"FAIL: {len(values)} values for {len(xs)} inputs, or a wrong value")
    print(
        json.dumps(
            {
                "backend": a.backend,
                "workers": a.workers,
                "tasks": len(xs),
                "seconds": seconds,
                "tasks_per_s": len(xs) / seconds,
                "python": sys.version.split()[0],
                "osiiso": version("osiiso"),
            }
        )
    )


if __name__ == "__main__":
    main()
