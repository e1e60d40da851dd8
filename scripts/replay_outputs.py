#!/usr/bin/env python3
"""The replay output of every capture under the given folders, as `ips-inline
replay FILE` writes it (EVE records and the closing stats record, default
config, a fresh engine per capture), reduced to one SHA-256 per capture.

Prints one JSON object: the build that ran (ips_inline/compiled.py) and
{capture path: digest}. tests/test_compiled.py runs it under both builds
(IPS_INLINE_PURE=1 for the interpreted one) and compares. A capture the
reader refuses gets the digest of its one-line error. Usage:
    replay_outputs.py DIR|FILE... [--show NAME]   (--show: print that capture's output)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ips_inline import compiled  # noqa: E402
from ips_inline.config import Config  # noqa: E402
from ips_inline.replay import replay  # noqa: E402
from ips_inline.sources.pcap import PcapError, looks_like_capture  # noqa: E402


def captures(roots: list[Path]) -> dict[str, Path]:
    """Every capture (by its magic) under the roots, by a stable name."""
    out: dict[str, Path] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if looks_like_capture(str(path)):
                out[f"{root.name}/{path.relative_to(root).as_posix()}" if path != root
                    else root.name] = path
    return out


def output(path: Path) -> str:
    """What `ips-inline replay` writes for this capture (or its error)."""
    out, warn = io.StringIO(), io.StringIO()
    try:
        replay([str(path)], Config(), out, None, warn)
    except PcapError as exc:  # refused link types included: one line, as the CLI says
        return f"error: {exc}\n"
    return out.getvalue() + warn.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--show", help="print the output of this capture instead")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # engine tracebacks: counted in stats, not compared
    found = captures(args.roots)
    if args.show:
        sys.stdout.write(output(found[args.show]))
        return 0
    digests = {name: hashlib.sha256(output(path).encode()).hexdigest()
               for name, path in found.items()}
    state = compiled.state()
    json.dump({"build": state.build, "reason": state.reason, "captures": digests}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
