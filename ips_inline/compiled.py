"""Which build of the packet path runs: the mypyc-compiled extension modules
or the plain Python sources (always the source of truth).

`scripts/build_compiled.py` compiles the hot modules into `_compiled/` beside
this file, with a manifest of the SHA-256 of every source the compiled code
was built from (the compiled modules and every project module they import,
whose types they rely on). `install()`, run when the package is imported,
puts a finder for the compiled modules ahead of the normal import path only
when all of these hold:

- `IPS_INLINE_PURE` is unset, empty or "0" (set it to run the .py files, for
  debugging and profiling, without rebuilding);
- a manifest exists, for this interpreter's extension suffix;
- every recorded source still has its recorded hash. The compiled modules
  call each other directly in C, so one stale module makes the whole build
  stale: it is then not used at all (setup rebuilds it);
- the shared library loads.

Otherwise everything is imported from source, silently; `state()` tells why.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PURE_ENV = "IPS_INLINE_PURE"
PACKAGE = "ips_inline"
PACKAGE_DIR = Path(__file__).resolve().parent
COMPILED_DIR = PACKAGE_DIR / "_compiled"
MANIFEST = COMPILED_DIR / "manifest.json"
FORMAT = 1  # manifest layout version

# The modules compiled, chosen by measuring (scripts/bench_engine.py): the
# per-packet path from decode to verdict. Package __init__ files stay
# interpreted (a package's __path__ must stay its source folder).
MODULES = (
    "ips_inline.engine",
    "ips_inline.bans",
    "ips_inline.packet.decode",
    "ips_inline.packet.conntrack",
    "ips_inline.packet.defrag",
    "ips_inline.packet.flows",
    "ips_inline.packet.tables",
    "ips_inline.http.stream",
    "ips_inline.http.request",
    "ips_inline.http.normalize",
    "ips_inline.http.clean",
    "ips_inline.detectors.base",
    "ips_inline.detectors.brute_force",
    "ips_inline.detectors.http_attacks",
    "ips_inline.detectors.icmp_flood",
    "ips_inline.detectors.port_scan",
    "ips_inline.detectors.rules",
    "ips_inline.detectors.sqli_layers",
    "ips_inline.detectors.stealth_scans",
    "ips_inline.detectors.syn_flood",
    "ips_inline.rules.buffers",
    "ips_inline.rules.match",
    "ips_inline.rules.ruleset",
    "ips_inline.rules.threshold",
)
GROUP = "ips_inline_native"  # mypyc's shared library: ips_inline_native__mypyc (served by _Finder)


@dataclass(frozen=True)
class State:
    build: str  # "compiled" or "interpreted"
    reason: str  # why, in a few words


def source_path(module: str) -> Path:
    """The .py file of a project module (not a package)."""
    return PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pure_requested(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PURE_ENV, "") not in ("", "0")


def read_manifest(path: Path = MANIFEST) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def stale_sources(manifest: dict, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The recorded sources whose content differs from the build's (or are gone)."""
    stale = []
    for rel, want in manifest.get("sources", {}).items():
        try:
            same = digest(package_dir / rel) == want
        except OSError:
            same = False
        if not same:
            stale.append(rel)
    return stale


class _Finder:
    """A meta path finder that serves exactly the compiled modules' specs."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        so = self.paths.get(fullname)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        return importlib.util.spec_from_file_location(fullname, so, loader=loader)


_state = State("interpreted", "not checked")


def state() -> State:
    return _state


def install(compiled_dir: Path = COMPILED_DIR) -> State:
    """Use the compiled modules if they are present, current and wanted."""
    global _state  # once per process, at package import: the switch is process-wide
    _state = _decide(compiled_dir)
    return _state


def _decide(compiled_dir: Path) -> State:
    if pure_requested():
        return State("interpreted", f"{PURE_ENV} is set")
    manifest = read_manifest(compiled_dir / "manifest.json")
    if manifest is None:
        return State("interpreted", "no compiled build")
    if manifest.get("suffix") != importlib.machinery.EXTENSION_SUFFIXES[0]:
        return State("interpreted", "compiled for another Python")
    stale = stale_sources(manifest)
    if stale:
        return State("interpreted", f"compiled build is stale ({stale[0]} changed)")
    paths = {name: compiled_dir / rel for name, rel in manifest.get("extensions", {}).items()}
    if any(name in sys.modules for name in paths):
        return State("interpreted", "imported before the finder")
    finder = _Finder(paths)
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module(manifest["library"])
    except (ImportError, KeyError) as exc:
        sys.meta_path.remove(finder)
        return State("interpreted", f"compiled build does not load: {exc}")
    return State("compiled", f"mypyc, {len(paths) - 1} modules")
