"""The signal wake-up a select() loop waits on."""

from __future__ import annotations

import gc
import os
import select
import signal

import pytest

from ips_inline.signals import catch_signals


@pytest.fixture
def restore_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def readable(wake) -> bool:
    return bool(select.select([wake], [], [], 0)[0])


def test_idle_wake_is_not_readable_after_collection(restore_handlers):
    # A collected write end closed the pair and the daemon's loop spun at
    # 100% CPU on a read end stuck at EOF.
    wake = catch_signals(lambda *_: None, lambda *_: None)
    try:
        gc.collect()
        assert not readable(wake)
    finally:
        wake.close()


def test_signal_runs_handler_and_wakes_once(restore_handlers):
    seen: list[str] = []
    wake = catch_signals(lambda *_: seen.append("stop"), lambda *_: seen.append("hup"))
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert seen == ["hup"]
        assert readable(wake)
        wake.clear()
        assert not readable(wake)
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == ["hup", "stop"]
    finally:
        wake.close()
