"""The real CrowdSec Local API (Debian's crowdsec 1.4.6) for end-to-end tests:
LAPI alone (`crowdsec -no-cs -no-capi`: no agent, no hub, no online API),
sqlite and every path in a temporary folder, run inside a lab namespace.
Not a test module.

    lapi = Lapi(lab, "victim", listen=lab.victim4, workdir=tmp)
    key = lapi.add_bouncer("ips-inline-victim")
    lapi.add_machine("ips-inline-victim", "pw...")
    lapi.start()
    lapi.cscli("decisions", "add", "--ip", "10.77.x.37", "--duration", "2h")
    lapi.stop()
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from lab import Lab

PORT = 8080
CONFIG = """\
common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: {dir}
config_paths:
  config_dir: {dir}/
  data_dir: {dir}/data/
  simulation_path: {dir}/simulation.yaml
  hub_dir: {dir}/hub/
  index_path: {dir}/hub/.index.json
  notification_dir: {dir}/notifications/
  plugin_dir: {dir}/plugins/
db_config:
  log_level: info
  type: sqlite
  db_path: {dir}/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 5000
    max_age: 7d
api:
  client:
    credentials_path: {dir}/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: {listen}:{port}
    profiles_path: {dir}/profiles.yaml
    trusted_ips:
      - 127.0.0.1
      - {listen}
prometheus:
  enabled: false
"""
PROFILES = """\
name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
 - type: ban
   duration: 4h
on_success: break
"""


def skip_reason() -> str | None:
    for tool in ("crowdsec", "cscli"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package crowdsec)"
    return None


class Lapi:
    def __init__(self, lab: Lab, host: str, listen: str, workdir: Path) -> None:
        self.lab, self.host, self.listen = lab, host, listen
        self.dir = workdir
        for sub in ("data", "hub", "notifications", "plugins"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.config = workdir / "config.yaml"
        self.config.write_text(CONFIG.format(dir=workdir, listen=listen, port=PORT))
        (workdir / "profiles.yaml").write_text(PROFILES)
        (workdir / "simulation.yaml").write_text("simulation: false\n")
        self.url = f"http://{listen}:{PORT}"
        self.log = workdir / "lapi.log"
        self.proc: subprocess.Popen | None = None
        # cscli's own machine, for `decisions add/list/delete` through the API.
        self.cscli("machines", "add", "cscli-tests", "--auto", "--force", "-f",
                   str(workdir / "local_api_credentials.yaml"), "--url", self.url)

    def cscli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.exec(self.host, ["cscli", "-c", str(self.config), *args],
                             check=check, timeout=30)

    def add_bouncer(self, name: str) -> str:
        key = secrets.token_hex(16)
        self.cscli("bouncers", "add", name, "-k", key, "-o", "raw")
        return key

    def add_machine(self, name: str) -> str:
        password = secrets.token_hex(16)
        self.cscli("machines", "add", name, "--password", password, "-f", "/dev/null",
                   "--force")
        return password

    def start(self, timeout: float = 20.0) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as log:
            self.proc = self.lab.popen(self.host, ["crowdsec", "-c", str(self.config), "-no-cs",
                                                   "-no-capi"], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while "Local API listening" not in (text := self.log.read_text()[offset:]):
            assert self.proc.poll() is None, text[-2000:]
            assert time.monotonic() < deadline, "LAPI did not start:\n" + text
            time.sleep(0.1)

    def stop(self, sig: str = "TERM") -> None:
        """Stop LAPI (KILL: as if it crashed); the database stays for start()."""
        if self.proc is None:
            return
        if sig == "KILL":
            self.proc.kill()
        self.lab.kill(self.proc)
        self.proc = None

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision, of every origin (cscli's -a), flattened from its alerts."""
        out = self.cscli("decisions", "list", "-o", "json", "-a").stdout
        alerts = json.loads(out) if out.strip() not in ("", "null") else []
        return [d for a in alerts or [] for d in a.get("decisions") or []]

    def alerts(self) -> list[dict[str, Any]]:
        out = self.cscli("alerts", "list", "-o", "json", "-a").stdout
        return json.loads(out) if out.strip() not in ("", "null") else []
