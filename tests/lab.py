"""Python wrapper around scripts/lab.sh for end-to-end tests (not a test module).

The topology is defined only in scripts/lab.sh; this module calls its subcommands and
reads names and addresses from `lab.sh env`.

    lab = Lab("ipst")
    lab.up()
    lab.exec("client", ["curl", "-sf", lab.url("victim", "/")])
    server = lab.start_victim_http()            # background, killed by lab.down()
    lab.down()
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LAB_SH = REPO / "scripts" / "lab.sh"
VICTIM_HTTP = REPO / "scripts" / "victim_http.py"
HOSTS = ("victim", "client", "attacker")


class LabError(RuntimeError):
    pass


class Lab:
    """One lab, named by its prefix. Attributes come from `lab.sh env`:

    prefix, octet, net4, net6, iface, bridge, ns_sw,
    victim4/client4/attacker4, victim6/client6/attacker6,
    ns_victim/ns_client/ns_attacker, victim_mac/client_mac/attacker_mac,
    and env (the raw dict, e.g. env["VICTIM4"]).
    """

    def __init__(self, prefix: str = "ipst", *, script: Path = LAB_SH,
                 victim2: bool = False) -> None:
        self.script = script
        self.prefix = prefix
        self.victim2 = victim2  # a second protected host (LAB_VICTIM2=1): env VICTIM24 ...
        self._procs: list[subprocess.Popen[Any]] = []
        self.env = self._read_env()
        e = self.env
        self.octet = int(e["LAB_OCTET"])
        self.net4, self.net6 = e["LAB_NET4"], e["LAB_NET6"]
        self.iface, self.bridge, self.ns_sw = e["LAB_IFACE"], e["LAB_BRIDGE"], e["NS_SW"]
        self.victim4, self.client4, self.attacker4 = e["VICTIM4"], e["CLIENT4"], e["ATTACKER4"]
        self.victim6, self.client6, self.attacker6 = e["VICTIM6"], e["CLIENT6"], e["ATTACKER6"]
        self.ns_victim, self.ns_client, self.ns_attacker = (
            e["NS_VICTIM"],
            e["NS_CLIENT"],
            e["NS_ATTACKER"],
        )
        self.victim_mac, self.client_mac, self.attacker_mac = (
            e["VICTIM_MAC"],
            e["CLIENT_MAC"],
            e["ATTACKER_MAC"],
        )

    # -- lab.sh ---------------------------------------------------------------------------
    def _script_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LAB_PREFIX"] = self.prefix
        env["LAB_VICTIM2"] = "1" if self.victim2 else "0"
        return env

    def _run_script(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(
            [str(self.script), *args],
            env=self._script_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and cp.returncode != 0:
            raise LabError(
                f"lab.sh {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}{cp.stderr}"
            )
        return cp

    def _read_env(self) -> dict[str, str]:
        out = self._run_script(["env"]).stdout
        env: dict[str, str] = {}
        for line in out.splitlines():
            for word in shlex.split(line):
                key, _, value = word.partition("=")
                env[key] = value
        return env

    def up(self) -> str:
        """Bring the lab up (no-op if already complete); returns the summary."""
        return self._run_script(["up"]).stdout

    def down(self) -> None:
        """Kill tracked background processes, then `lab.sh down` (kills the rest)."""
        self.kill_all()
        self._run_script(["down"])

    def status(self) -> int:
        """0 = up, 1 = partial, 2 = down (exit code of `lab.sh status`)."""
        return self._run_script(["status"], check=False).returncode

    def is_up(self) -> bool:
        return self.status() == 0

    def namespaces(self) -> list[str]:
        return [self.ns(h) for h in (*HOSTS, *(("victim2",) if self.victim2 else ()), "sw")]

    # -- addresses ----------------------------------------------------------------------
    def ns(self, host: str) -> str:
        return self.ns_sw if host == "sw" else self.env[f"NS_{host.upper()}"]

    def addr(self, host: str, family: int = 4) -> str:
        if family not in (4, 6):
            raise ValueError("family must be 4 or 6")
        return self.env[f"{host.upper()}{family}"]

    def url(self, host: str, path: str = "/", *, family: int = 4, port: int = 80) -> str:
        a = self.addr(host, family)
        hostpart = f"[{a}]" if family == 6 else a
        return f"http://{hostpart}:{port}{path}"

    # -- running commands in a host -----------------------------------------------------
    def _argv(self, host: str, argv: Sequence[str]) -> list[str]:
        if isinstance(argv, str):
            raise TypeError("argv must be a sequence of strings, not a str")
        return [str(self.script), "exec", host, *map(str, argv)]

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        timeout: float = 30,
        check: bool = True,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in host; captures text stdout/stderr unless overridden in kw."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("env", self._script_env())
        return subprocess.run(self._argv(host, argv), timeout=timeout, check=check, **kw)

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start argv in host in the background; tracked and killed by down()/kill_all().

        `lab.sh exec` exec()s into `ip netns exec`, which exec()s argv: proc.pid is argv's
        PID. It gets its own session so the whole process group can be signalled.
        """
        kw.setdefault("env", self._script_env())
        kw.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(self._argv(host, argv), **kw)
        self._procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[Any], timeout: float = 3) -> int | None:
        """SIGTERM the process group, SIGKILL after timeout; returns the exit code."""
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    if os.getpgid(proc.pid) == proc.pid:  # own group: start_new_session
                        os.killpg(proc.pid, sig)
                    else:
                        proc.send_signal(sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.poll()

    def kill_all(self) -> None:
        for proc in list(self._procs):
            self.kill(proc)

    # -- conveniences for e2e tests -----------------------------------------------------
    def wait_http(
        self, url: str, *, host: str = "client", timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        """Poll url with curl from host until it answers (any HTTP status)."""
        deadline = time.monotonic() + timeout
        while True:
            cp = self.exec(
                host,
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", url],
                check=False,
            )
            if cp.returncode == 0 and cp.stdout not in ("", "000"):
                return cp
            if time.monotonic() > deadline:
                raise LabError(f"{url} not answering from {host} after {timeout}s")
            time.sleep(0.1)

    def start_victim_http(
        self, port: int = 80, *, bind: str = "::", log: Any = subprocess.DEVNULL,
        host: str = "victim",
    ) -> subprocess.Popen[Any]:
        """Start scripts/victim_http.py in the victim (or `host`) and wait until it serves."""
        proc = self.popen(
            host,
            [sys.executable, str(VICTIM_HTTP), "--bind", bind, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        family = 6 if ":" in bind else 4
        try:
            self.wait_http(self.url(host, "/", family=family, port=port))
        except LabError:
            self.kill(proc)
            raise
        return proc

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"Lab(prefix={self.prefix!r}, net4={self.net4!r}, net6={self.net6!r})"
