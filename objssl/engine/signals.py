"""Stopping on request: SIGTERM/SIGINT finish the current step, write a checkpoint, and stop.

Schedulers (Slurm, systemd, Kubernetes) signal the whole process group. The data-loader workers
therefore ignore them (:func:`ignore_stop_signals` is their ``worker_init_fn``): only the main
process decides when to stop, and it shuts the workers down itself.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

from objssl.distributed import any_rank

__all__ = ["STOP_SIGNALS", "StopRequest", "ignore_stop_signals"]

log = logging.getLogger("objssl.train")

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT") if hasattr(signal, name))


def _ignore_first_sigterm(signum: int, frame: Any) -> None:
    # the process group's SIGTERM is ignored; a second one (the loader terminating a stuck worker,
    # or multiprocessing's clean-up at exit) ends the worker as usual
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def ignore_stop_signals(worker_id: int) -> None:
    """``DataLoader`` ``worker_init_fn``: a worker keeps serving batches through the process group's
    SIGINT (ignored) and its first SIGTERM (see :func:`_ignore_first_sigterm`)."""
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _ignore_first_sigterm)


class StopRequest:
    """Catches the stop signals while installed (``with StopRequest() as stop: ... stop.requested``).

    The first signal sets :attr:`requested`; a second SIGINT interrupts at once (KeyboardInterrupt),
    a second SIGTERM is ignored (the step and the checkpoint are under way).
    """

    def __init__(self) -> None:
        self._flag = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self._flag and signum == getattr(signal, "SIGINT", None):
            raise KeyboardInterrupt
        if not self._flag:
            log.warning("signal %s: finishing this step, writing a checkpoint, then stopping",
                        signal.Signals(signum).name)
        self._flag = True

    def __enter__(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    @property
    def requested(self) -> bool:
        """True once any process of the job was signalled (all ranks agree, so they stop together)."""
        return any_rank(self._flag)
