"""The benchmark's handle on the namespace lab (topology: scripts/lab.sh only).

Every process started in the lab is tracked and killed in `down()`; stopped
processes are continued first so SIGTERM reaches them. Kernel queue counters
are read from /proc/PID/net/... of an anchor process in the victim namespace,
which shows that namespace's view without entering it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ips_inline.metrics.kernel import QueueCounters, parse_nfqueue

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "scripts" / "lab.sh"
NFQ_PROC = "net/netfilter/nfnetlink_queue"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which."""


class BenchLab:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.env = {**os.environ, "LAB_PREFIX": prefix}
        self.procs: list[subprocess.Popen[Any]] = []
        self.addr = self._read_env()
        self.victim, self.client, self.attacker = (self.addr["VICTIM4"], self.addr["CLIENT4"],
                                                   self.addr["ATTACKER4"])
        self.anchor: subprocess.Popen[Any] | None = None

    def _lab_sh(self, *args: str, timeout: float = 120) -> str:
        cp = subprocess.run([str(LAB_SH), *args], env=self.env, capture_output=True, text=True,
                            timeout=timeout, check=False)
        if cp.returncode != 0:
            raise BenchError(f"lab.sh {' '.join(args)}: {(cp.stderr or cp.stdout).strip()}")
        return cp.stdout

    def _read_env(self) -> dict[str, str]:
        env = {}
        for line in self._lab_sh("env").splitlines():
            for word in shlex.split(line):
                key, _, value = word.partition("=")
                env[key] = value
        return env

    def up(self) -> None:
        self._lab_sh("down")  # leftovers of an interrupted run
        self._lab_sh("up")
        self.anchor = self.popen("victim", ["sleep", "100000"])

    def down(self) -> None:
        for proc in reversed(self.procs):
            self.kill(proc)
        self._lab_sh("down")

    # -- processes -------------------------------------------------------------------
    def argv(self, host: str, argv: Sequence[str]) -> list[str]:
        return [str(LAB_SH), "exec", host, *map(str, argv)]

    def run(self, host: str, argv: Sequence[str], timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(self.argv(host, argv), env=self.env, capture_output=True, text=True,
                            timeout=timeout, check=False)
        if check and cp.returncode != 0:
            words = [Path(str(argv[0])).name, *(str(a) for a in argv[1:] if "/" not in str(a))]
            raise BenchError(f"{' '.join(words[:3])} exited {cp.returncode}: "
                             f"{(cp.stderr or cp.stdout).strip()[-300:]}")
        return cp

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Background process in host; `lab.sh exec` exec()s, so proc.pid is argv's pid."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self.argv(host, argv), env=self.env, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[Any], timeout: float = 5) -> None:
        if proc.poll() is None:
            signal_tree(proc.pid, signal.SIGCONT)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc in self.procs:
            self.procs.remove(proc)

    # -- kernel state in the victim ----------------------------------------------------
    def queues(self) -> dict[int, QueueCounters]:
        assert self.anchor is not None
        try:
            with open(f"/proc/{self.anchor.pid}/{NFQ_PROC}") as fh:
                return parse_nfqueue(fh.read())
        except FileNotFoundError:
            return {}

    def wait_bound(self, queues: Sequence[int], proc: subprocess.Popen[Any],
                   timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not set(queues) <= set(self.queues()):
            if proc.poll() is not None:
                raise BenchError(f"consumer exited ({proc.returncode}) before binding {queues}")
            if time.monotonic() > deadline:
                raise BenchError(f"queues {list(queues)} not bound after {timeout:.0f}s "
                                 f"(bound: {sorted(self.queues())})")
            time.sleep(0.05)


def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants (the workers of a multi-process daemon)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def signal_pids(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def signal_tree(pid: int, sig: int) -> list[int]:
    pids = tree(pid)
    signal_pids(pids, sig)
    return pids


def proc_status(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmHWM, VmRSS), or 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0
