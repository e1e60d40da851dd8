"""The compiled build (mypyc, ips_inline/compiled.py) against the interpreted one:
the same replay output byte for byte, the switch, and stale builds left unused.

Where no compiled build exists these skip with one line (and fail under CI=true:
setup.sh makes the build, so CI runs the whole suite on it)."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ips_inline import compiled

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
OUTPUTS = REPO / "scripts" / "replay_outputs.py"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def need_compiled() -> None:
    state = compiled.state()
    if state.build != "compiled":
        pytest.skip(f"no compiled build in use ({state.reason}): run scripts/build_compiled.py")


def env(pure: bool) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    return {**out, compiled.PURE_ENV: "1"} if pure else out


def outputs(roots: list[Path], pure: bool) -> dict:
    proc = subprocess.run([sys.executable, str(OUTPUTS), *map(str, roots)], env=env(pure),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def compare(roots: list[Path]) -> int:
    """Both builds side by side (two processes, two cores); the captures compared."""
    with ThreadPoolExecutor(2) as pool:
        fast, pure = pool.map(lambda p: outputs(roots, p), (False, True))
    assert fast["build"] == "compiled", fast["reason"]
    assert pure["build"] == "interpreted", pure["reason"]
    assert fast["captures"].keys() == pure["captures"].keys()
    differ = sorted(n for n, d in fast["captures"].items() if pure["captures"][n] != d)
    assert not differ, (f"{len(differ)} captures replay differently, e.g. {differ[:5]} "
                        f"(see: scripts/replay_outputs.py ROOT --show NAME, with and without "
                        f"{compiled.PURE_ENV}=1)")
    return len(fast["captures"])


def test_pcaps_replay_byte_identical_on_both_builds() -> None:
    need_compiled()
    assert compare([REPO / "pcaps"]) >= 10


def test_the_corpus_replays_byte_identical_on_both_builds() -> None:
    need_compiled()
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    assert compare([CORPUS]) >= 700


def _files(pure: bool, cwd: Path | None = None, pythonpath: Path | None = None) -> dict:
    """Where each compiled-candidate module was imported from, in a fresh process."""
    code = ("import importlib, json, ips_inline; from ips_inline import compiled as c; "
            "print(json.dumps({'state': c.state().build, 'reason': c.state().reason, "
            "'files': {m: importlib.import_module(m).__file__ for m in c.MODULES}}))")
    run_env = env(pure)
    if pythonpath is not None:
        run_env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run([sys.executable, "-c", code], env=run_env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_the_switch_imports_the_py_files() -> None:
    need_compiled()
    fast, pure = _files(pure=False), _files(pure=True)
    assert fast["state"] == "compiled"
    assert all(f.endswith(SUFFIX) for f in fast["files"].values()), fast["files"]
    assert pure["state"] == "interpreted" and compiled.PURE_ENV in pure["reason"]
    for name, path in pure["files"].items():
        assert Path(path) == compiled.source_path(name), (name, path)


def test_a_stale_compiled_build_is_not_used(tmp_path: Path) -> None:
    """A copy of the package with its build: used as it is; once one compiled
    module's source changed, none of the build is (its modules call each
    other in C), and every module comes from source."""
    need_compiled()
    shutil.copytree(compiled.PACKAGE_DIR, tmp_path / "ips_inline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    copy = tmp_path / "ips_inline"
    same = _files(pure=False, cwd=tmp_path, pythonpath=tmp_path)
    assert same["state"] == "compiled", same["reason"]
    assert all(Path(f).is_relative_to(copy) for f in same["files"].values())
    with (copy / "packet" / "decode.py").open("a") as fh:
        fh.write("\n# changed after the build\n")
    stale = _files(pure=False, cwd=tmp_path, pythonpath=tmp_path)
    assert stale["state"] == "interpreted"
    assert stale["reason"] == "compiled build is stale (packet/decode.py changed)"
    assert all(f.endswith(".py") and Path(f).is_relative_to(copy)
               for f in stale["files"].values()), stale["files"]


def test_a_stale_dependency_also_makes_the_build_stale(tmp_path: Path) -> None:
    """The manifest covers what the compiled code relies on, not only what it
    compiled: a changed config.py (its dataclass types) counts too."""
    manifest = compiled.read_manifest()
    if manifest is None:
        pytest.skip("no compiled build (scripts/build_compiled.py)")
    assert "config.py" in manifest["sources"] and "engine.py" in manifest["sources"]
    (tmp_path / "config.py").write_text("# another config\n")
    (tmp_path / "engine.py").write_bytes((compiled.PACKAGE_DIR / "engine.py").read_bytes())
    fake = {"sources": {"config.py": manifest["sources"]["config.py"],
                        "engine.py": manifest["sources"]["engine.py"]}}
    assert compiled.stale_sources(fake, tmp_path) == ["config.py"]


def test_no_build_means_interpreted_silently(tmp_path: Path, capsys) -> None:
    """No manifest, a broken one, one for another Python: interpreted, no output."""
    assert compiled._decide(tmp_path / "none") == compiled.State("interpreted",
                                                                   "no compiled build")
    (tmp_path / "manifest.json").write_text("{not json")
    assert compiled._decide(tmp_path).reason == "no compiled build"
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": compiled.FORMAT, "suffix": ".cpython-99-x.so", "sources": {}}))
    assert compiled._decide(tmp_path).reason == "compiled for another Python"
    assert capsys.readouterr() == ("", "")


def test_a_manifest_with_a_changed_source_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": compiled.FORMAT, "suffix": SUFFIX, "library": "x", "extensions": {},
         "sources": {"engine.py": "0" * 64}}))
    assert compiled._decide(tmp_path) == compiled.State(
        "interpreted", "compiled build is stale (engine.py changed)")


@pytest.mark.parametrize("value, pure", [("", False), ("0", False), ("1", True),
                                         ("yes", True)])
def test_the_switch_values(value: str, pure: bool) -> None:
    assert compiled.pure_requested({compiled.PURE_ENV: value}) is pure
    assert compiled.pure_requested({}) is False


def test_version_and_metric_tell_the_build() -> None:
    from ips_inline.metrics.collector import build_labels

    proc = subprocess.run([sys.executable, "-m", "ips_inline.cli", "--version"], env=env(True),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.strip().endswith("(interpreted: IPS_INLINE_PURE is set)"), proc.stdout
    assert build_labels() == {"version": __import__("ips_inline").__version__,
                              "build": compiled.state().build}
