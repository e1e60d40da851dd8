"""Ban store: bans and offence history that survive a restart.

A small JSON file, written atomically (temp file + rename) under an flock, so
the daemon and the `ban`/`unban` commands can both update it safely. Each
entry: ip -> {"expires": epoch seconds, "detector": name, "count": bans so far}.
Entries whose ban ended stay (with their count) for escalation until
`history_ttl` has passed since they expired.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Entries = dict[str, dict[str, Any]]


class StoreError(Exception):
    """The state file cannot be read or written; one line for the user."""


class BanStore:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.lock_path, "a") as lock:
                _owned_like_dir(lock.fileno(), self.path.parent)
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield
        except OSError as exc:
            raise StoreError(f"state file {self.path}: {exc.strerror}") from None

    def load(self) -> Entries:
        return _bans(self._load_doc())

    def load_section(self, name: str) -> dict[str, Any]:
        """Another top-level part of the file (e.g. "crowdsec"), {} if absent."""
        part = self._load_doc().get(name)
        return part if isinstance(part, dict) else {}

    def _load_doc(self) -> dict[str, Any]:
        try:
            with open(self.path) as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"state file {self.path} is unreadable: {exc}") from None
        return data if isinstance(data, dict) else {}

    def _save(self, entries: Entries, doc: dict[str, Any] | None = None) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            with os.fdopen(fd, "w") as fh:
                _owned_like_dir(fh.fileno(), self.path.parent)
                # One line: json's C encoder (indent= falls back to the Python one).
                # Other sections of the file are kept as they are.
                fh.write(json.dumps({**(doc or {}), "version": 1, "bans": entries},
                                    sort_keys=True))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def update(self, change: Callable[..., Any], section: str | None = None) -> Any:
        """Read-modify-write under the lock; returns what `change` returns.
        change(entries), or with `section` change(entries, that section's
        dict), so a change to both is one atomic write."""
        with self._locked():
            doc = self._load_doc()
            entries = _bans(doc)
            if section is None:
                result = change(entries)
            else:
                part = doc.get(section)
                doc[section] = part = part if isinstance(part, dict) else {}
                result = change(entries, part)
            self._save(entries, doc)
            return result

    def record_ban(self, ip: str, expires: float, detector: str, count: int) -> None:
        self.record_bans([(ip, expires, detector, count)])

    def record_bans(self, bans: list[tuple[str, float, str, int]]) -> None:
        """(ip, expires, detector, count) for each: one read-modify-write."""
        def change(entries: Entries) -> None:
            for ip, expires, detector, count in bans:
                entries[ip] = {"expires": round(expires, 3), "detector": detector, "count": count}
        self.update(change)

    def remove(self, ip: str) -> bool:
        """End a ban now (keep the history); False if it was not banned."""
        def change(entries: Entries) -> bool:
            entry = entries.get(ip)
            if entry is None:
                return False
            entry["expires"] = 0
            return True
        return bool(self.update(change))

    def prune(self, now: float, history_ttl: float) -> None:
        def change(entries: Entries) -> None:
            for ip in [ip for ip, e in entries.items() if e["expires"] + history_ttl < now]:
                del entries[ip]
        self.update(change)

    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0


def _bans(doc: dict[str, Any]) -> Entries:
    bans = doc.get("bans", {})
    if not isinstance(bans, dict):
        return {}
    return {ip: e for ip, e in bans.items() if isinstance(e, dict) and "expires" in e}


def _owned_like_dir(fd: int, directory: Path) -> None:
    """Give a file root just created the owner of its directory. The daemon
    runs unprivileged (systemd StateDirectory=), while `ips-inline ban` runs
    as root: a root-owned 0600 state or lock file would lock the daemon out."""
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if os.fstat(fd).st_uid != st.st_uid:
        os.fchown(fd, st.st_uid, st.st_gid)
