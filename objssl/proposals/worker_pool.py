"""A process pool that survives dead workers and says which task killed one.

``multiprocessing.Pool`` replaces a worker that dies (OOM kill, a native crash in OpenCV) and waits
forever for the result it was computing. :func:`run_isolating_crashes` runs tasks on a
:class:`concurrent.futures.ProcessPoolExecutor` (spawn start method), which notices a dead worker
(``BrokenProcessPool``). The tasks that were in flight are then suspects: each is rerun alone in a
fresh pool, so one that kills its worker again is reported as a :class:`WorkerCrash` and every other
task still completes.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerCrash", "run_isolating_crashes"]


@dataclass(frozen=True)
class WorkerCrash:
    """The outcome of a task whose worker process died while running it alone.

    Attributes:
        how: e.g. ``"killed by SIGKILL"`` or ``"exited with status 3"``.
    """

    how: str


def _describe_exit(pool: ProcessPoolExecutor) -> str:
    # The executor terminates the surviving workers (SIGTERM) once it is broken; the others died.
    # Its manager thread reaps them concurrently, so an exit code read now can still be missing:
    # take the processes, let the shutdown join them, then read the codes.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=True, cancel_futures=True)
    for p in processes:
        p.join(timeout=10)
    codes = sorted({p.exitcode for p in processes if p.exitcode not in (None, 0, -signal.SIGTERM)})
    if not codes:
        return "terminated"
    words = []
    for code in codes:
        if code < 0:
            try:
                words.append(f"killed by {signal.Signals(-code).name}")
            except ValueError:
                words.append(f"killed by signal {-code}")
        else:
            words.append(f"exited with status {code}")
    return " / ".join(words)


def run_isolating_crashes(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple = (),
    should_run: Callable[[int], bool] = lambda i: True,
    max_in_flight: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(task number, fn(task) or WorkerCrash)`` as tasks finish (in any order).

    Args:
        fn, initializer: module-level functions (they are pickled by reference to spawned workers).
        should_run: asked just before a task is submitted; False skips it (nothing is yielded).
        max_in_flight: tasks submitted at once (default ``workers``): the number of suspects when a
            worker dies.

    An exception raised by ``fn`` in a worker is raised here (the pool is shut down first).
    """
    limit = max(1, max_in_flight or workers)
    queue: deque[int] = deque(range(len(tasks)))
    suspects: deque[int] = deque()
    ctx = mp.get_context("spawn")  # no forked torch/OpenCV thread state in the workers
    while queue or suspects:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs)
        in_flight: dict[Future, int] = {}
        alone: int | None = None  # the suspect now running by itself
        try:
            while True:
                if alone is None and suspects and not in_flight:
                    while suspects and alone is None:
                        i = suspects.popleft()
                        if should_run(i):
                            alone = i
                            in_flight[pool.submit(fn, tasks[i])] = i
                if alone is None and not suspects:
                    while len(in_flight) < limit and queue:
                        i = queue.popleft()
                        if should_run(i):
                            in_flight[pool.submit(fn, tasks[i])] = i
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = [f for f in done if isinstance(f.exception(), BrokenProcessPool)]
                for future in done:
                    if future not in broken:
                        i = in_flight.pop(future)
                        if i == alone:
                            alone = None
                        yield i, future.result()  # re-raises the task's own exception
                if broken:
                    raise BrokenProcessPool()
        except BrokenProcessPool:
            how = _describe_exit(pool)
            lost = sorted(in_flight.values())
            if alone is not None and lost == [alone]:
                yield alone, WorkerCrash(how)
            else:
                suspects.extend(lost)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
