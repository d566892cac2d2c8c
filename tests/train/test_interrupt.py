"""StopOnSignal with real signals sent to this process."""

from __future__ import annotations

import os
import signal

import pytest

from flowrl.train.interrupt import StopOnSignal


def test_first_signal_requests_a_stop_second_ctrl_c_raises_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopOnSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    err = stop.interrupted(12, "saved x")
    assert err.exit_code == 130 and "SIGINT after step 12; saved x" in str(err)


def test_sigterm_requests_a_stop_with_exit_code_143():
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.interrupted(3, "").exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
