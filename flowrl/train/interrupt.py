"""SIGINT and SIGTERM during training: finish the step, save, then exit 130 or 143.

The first signal only sets a flag that the training loop reads after each step; the loop
then writes `last.pt` and raises `Interrupted`, which the CLI turns into one line and the
shell's exit code for the signal (128 + signal number). A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from flowrl.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Context manager: while inside, SIGINT/SIGTERM request a stop instead of killing.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self.__exit__()  # a second signal: the default behaviour, now
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interrupted(self, step: int, resume_hint: str) -> Interrupted:
        """The exception to raise once the run is saved (another rank's signal: SIGTERM)."""
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        return Interrupted(signum, f"stopped by {name} after step {step}; {resume_hint}")
