"""Command line: `ips-inline [run]`, `replay`, `check-config`, and the rule
and ban management commands. Bad input ends in one line on stderr and a
non-zero status, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import __version__
from .config import Config, ConfigError, load
from .sources.pcap import PcapError

EXIT_USAGE = 2


class UserError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


def _replay(args: argparse.Namespace, cfg: Config) -> int:
    from .replay import progress_stream, replay

    if args.eve:
        try:
            out = open(args.eve, "w")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UserError(f"cannot write {args.eve}: {exc.strerror}") from None
    else:
        out = sys.stdout
    try:
        replay(args.pcap, cfg, out, progress_stream())
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _check_config(args: argparse.Namespace, cfg: Config) -> int:
    print(f"{args.file}: ok")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ips-inline", description=__doc__)
    p.add_argument("--version", action="version", version=f"ips-inline {__version__}")
    p.add_argument("--config", "-c", help="TOML config file (built-in defaults without one)")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("replay", help="run the engine over pcap/pcapng files")
    r.add_argument("pcap", nargs="+")
    r.add_argument("--eve", help="write EVE records here instead of stdout")
    r.add_argument("--config", "-c", dest="sub_config", help=argparse.SUPPRESS)
    r.set_defaults(func=_replay)
    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("file")
    c.set_defaults(func=_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace, Config], int] | None = getattr(args, "func", None)
    if func is None:
        parser().print_help()
        return EXIT_USAGE
    try:
        path = getattr(args, "file", None) if args.command == "check-config" else (
            getattr(args, "sub_config", None) or args.config)
        cfg = load(path)
        return func(args, cfg)
    except (ConfigError, PcapError, UserError) as exc:
        print(f"ips-inline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
