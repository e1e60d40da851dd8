#!/usr/bin/env python3
"""make compiled: the hot modules (ips_inline/compiled.py: MODULES) compiled with
mypyc into ips_inline/_compiled/, with the manifest the loader checks.

Run by scripts/setup.sh, so at the start of every `make test`: it returns at once
when the build is current (same sources, mypy and Python), and after a failed
compile it does not try again until something changes. A failure never fails
setup: one line, and the interpreted modules run. The C sources, objects and the
compiler's log stay in build/mypyc/. Usage:
    build_compiled.py [--force] [--check]   (--check: exit 1 unless current)
"""

from __future__ import annotations

import argparse
import ast
import importlib.machinery
import importlib.metadata
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ips_inline import compiled  # noqa: E402

WORK = REPO / "build" / "mypyc"
LOG = WORK / "build.log"
FAILED = WORK / "failed.json"
# mypy reads the rest of the project to learn its types, but only the
# compiled modules must type-check; third-party packages without stubs are Any.
MYPY_FLAGS = ["--ignore-missing-imports", "--follow-imports=silent", "--no-incremental"]


def module_file(name: str) -> Path | None:
    """The file of a project module or package, if it exists."""
    base = compiled.PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere (also under TYPE_CHECKING or
    inside functions: their types are part of what mypyc compiled against)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == compiled.PACKAGE and module_file(m)}


def closure(modules: tuple[str, ...]) -> list[Path]:
    """Every project file the compiled modules depend on, their packages' too."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        path = module_file(name)
        if path is not None:
            todo += sorted(_imports(name, path) - seen)
    seen.discard(f"{compiled.PACKAGE}.compiled")  # the loader itself: no types used from it
    return sorted({p for m in seen if (p := module_file(m)) is not None})


def wanted() -> dict:
    """What a current build must have been made from."""
    try:
        mypy = importlib.metadata.version("mypy")
    except importlib.metadata.PackageNotFoundError:
        mypy = None
    return {
        "format": compiled.FORMAT,
        "modules": list(compiled.MODULES),
        "group": compiled.GROUP,
        "mypy": mypy,
        "suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
        "sources": {str(p.relative_to(compiled.PACKAGE_DIR)): compiled.digest(p)
                    for p in closure(compiled.MODULES)},
    }


def _key(data: dict) -> dict:
    return {k: data.get(k) for k in ("format", "modules", "group", "mypy", "suffix", "sources")}


def current(want: dict) -> bool:
    have = compiled.read_manifest()
    return have is not None and _key(have) == _key(want)


def compile_into(lib: Path) -> None:
    """mypyc and the C compiler, in this process (its output goes to the log)."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(compiled.source_path(m).relative_to(REPO)) for m in compiled.MODULES]
    exts = mypycify([*paths, *MYPY_FLAGS], group_name=compiled.GROUP,
                    target_dir=str(WORK / "c"), opt_level="3", debug_level="0")
    dist = Distribution({"name": "ips-inline-compiled", "ext_modules": exts})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(lib)
    cmd.build_temp = str(WORK / "tmp")
    cmd.parallel = 2
    dist.run_command("build_ext")


def install(lib: Path, want: dict) -> None:
    """Move the built extensions into place, the manifest last (the loader
    trusts nothing without it)."""
    new = compiled.COMPILED_DIR.with_name("_compiled.new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    suffix = want["suffix"]
    extensions = {}
    for so in sorted(lib.rglob(f"*{suffix}")):
        rel = so.relative_to(lib)  # ips_inline/...: where mypyc's modules say they are
        (new / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(so, new / rel)
        name = ".".join((*rel.parts[:-1], rel.name[:-len(suffix)]))
        extensions[name] = str(rel)
    library = f"{compiled.GROUP}__mypyc"
    missing = [m for m in (*compiled.MODULES, library) if m not in extensions]
    if missing:
        raise RuntimeError(f"build made no extension for {', '.join(missing)}")
    (new / "manifest.json").write_text(json.dumps(
        {**want, "library": library, "extensions": extensions, "built": time.time()},
        indent=1, sort_keys=True) + "\n")
    shutil.rmtree(compiled.COMPILED_DIR, ignore_errors=True)
    new.rename(compiled.COMPILED_DIR)


def build(want: dict) -> str | None:
    """Compile in a child process (a crash in the compiler is a failed build);
    None on success, else why it failed."""
    if want["mypy"] is None:
        return "mypy (mypyc) is not installed"
    WORK.mkdir(parents=True, exist_ok=True)
    lib = WORK / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    with LOG.open("w") as log:
        proc = subprocess.run([sys.executable, __file__, "--compile-into", str(lib)],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        return f"the compiler failed (exit {proc.returncode})"
    try:
        install(lib, want)
    except (OSError, RuntimeError) as exc:
        return str(exc)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even if current")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the build is current")
    ap.add_argument("--compile-into", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_into:
        compile_into(args.compile_into)
        return 0
    want = wanted()
    if args.check:
        return 0 if current(want) else 1
    if not args.force and current(want):
        return 0
    if not args.force and FAILED.is_file() and _load(FAILED) == _key(want):
        print(f"compiled build: failed before on these sources (see {LOG.relative_to(REPO)});"
              " running interpreted")
        return 0
    print("compiled build: compiling the packet path with mypyc (about a minute)", flush=True)
    start = time.monotonic()
    error = build(want)
    if error is not None:
        shutil.rmtree(compiled.COMPILED_DIR, ignore_errors=True)  # stale: nothing would use it
        WORK.mkdir(parents=True, exist_ok=True)
        FAILED.write_text(json.dumps(_key(want)))
        where = f" (see {LOG.relative_to(REPO)})" if LOG.is_file() else ""
        print(f"compiled build: {error}{where}; running interpreted")
        return 0
    FAILED.unlink(missing_ok=True)
    print(f"compiled build: {len(compiled.MODULES)} modules in {time.monotonic() - start:.0f} s")
    return 0


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
