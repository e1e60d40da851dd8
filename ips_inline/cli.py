"""Command line: `ips-inline [run]`, `replay`, `check-config`, and the rule
and ban management commands. Bad input ends in one line on stderr and a
non-zero status, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from . import __version__, compiled
from .config import Config, ConfigError, load
from .errors import UserError
from .sources.pcap import PcapError

EXIT_USAGE = 2


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
        replay(args.pcap, cfg, out, progress_stream(), sys.stderr)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _check_config(args: argparse.Namespace, cfg: Config) -> int:
    print(f"{args.file}: ok")
    return 0


def _check_rules(args: argparse.Namespace, cfg: Config) -> int:
    from .config import rule_variables
    from .rules import RuleFileError, expand, load

    logging.getLogger("ips_inline.rules").setLevel(logging.ERROR)  # printed below instead
    try:
        files = expand(args.files)
        rs = load(files, args.default, rule_variables(cfg.rules), cfg.rules.max_tracked)
    except RuleFileError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    sources = sorted({r.file for r in rs.rules} | {s.file for s in rs.skipped},
                     key=lambda f: (f not in files, files.index(f) if f in files else 0, f))
    for name in sources:
        loaded = sum(1 for r in rs.rules if r.file == name)
        skipped = [s for s in rs.skipped if s.file == name]
        print(f"{name}: {loaded} loaded, {len(skipped)} skipped")
        for s in skipped:
            print(f"  {s.file}:{s.line} sid {s.sid if s.sid is not None else '?'}: {s.reason}")
    print(f"total: {rs.loaded} loaded, {len(rs.skipped)} skipped")
    return 0


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from .daemon import run

    return run(cfg, _config_path(args))


def _install(args: argparse.Namespace, cfg: Config) -> int:
    from .manage import install_rules

    return install_rules(cfg)


def _uninstall(args: argparse.Namespace, cfg: Config) -> int:
    from .manage import uninstall_rules

    return uninstall_rules(cfg, args.destroy_sets)


def _ban(args: argparse.Namespace, cfg: Config) -> int:
    from .manage import ban

    return ban(cfg, args.ip, args.duration)


def _unban(args: argparse.Namespace, cfg: Config) -> int:
    from .manage import unban

    return unban(cfg, args.ip)


def _bans(args: argparse.Namespace, cfg: Config) -> int:
    from .manage import list_bans

    return list_bans(cfg, args.json)


def _explain(args: argparse.Namespace, cfg: Config) -> int:
    import time

    from .explain import main as explain
    from .manage import parse_ip

    # A replay's output (--eve) has no state file: read one only when named.
    state = args.state if args.eve else (args.state or cfg.live.state_path)
    return explain(parse_ip(args.ip), args.eve or [cfg.live.eve_path], state, args.json,
                   time.time() if state else None, sys.stdout)


def _config_path(args: argparse.Namespace) -> str | None:
    if args.command == "check-config":
        return args.file
    return getattr(args, "sub_config", None) or args.config


def _command(sub, name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--config", "-c", dest="sub_config", help=argparse.SUPPRESS)
    p.set_defaults(func=func)
    return p


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ips-inline", description=__doc__)
    build = compiled.state()
    p.add_argument("--version", action="version",
                   version=f"ips-inline {__version__} ({build.build}: {build.reason})")
    p.add_argument("--config", "-c", help="TOML config file (built-in defaults without one)")
    sub = p.add_subparsers(dest="command")
    _command(sub, "run", _run, "run the inline daemon (the default)")
    r = _command(sub, "replay", _replay, "run the engine over pcap/pcapng files")
    r.add_argument("pcap", nargs="+")
    r.add_argument("--eve", help="write EVE records here instead of stdout")
    c = _command(sub, "check-config", _check_config, "validate a config file")
    c.add_argument("file")
    cr = _command(sub, "check-rules", _check_rules, "load rule files and report what loads")
    cr.add_argument("files", nargs="+", metavar="FILE")
    cr.add_argument("--default", action="store_true", help="also load the shipped ruleset")
    _command(sub, "install-rules", _install, "install the iptables chain and ban sets")
    u = _command(sub, "uninstall-rules", _uninstall, "remove what install-rules added")
    u.add_argument("--destroy-sets", action="store_true", help="also destroy the ban sets")
    b = _command(sub, "ban", _ban, "ban an address now")
    b.add_argument("ip")
    b.add_argument("--duration", type=int, help="seconds (default: bans.base_duration)")
    ub = _command(sub, "unban", _unban, "lift a ban now")
    ub.add_argument("ip")
    ls = _command(sub, "bans", _bans, "list active bans")
    ls.add_argument("--json", action="store_true")
    ex = _command(sub, "explain", _explain, "why is (or was) this address banned?")
    ex.add_argument("ip")
    ex.add_argument("--eve", action="append", metavar="FILE",
                    help="EVE log(s) to read, oldest first (.gz too; default: live.eve_path); "
                         "then the state file is read only with --state")
    ex.add_argument("--state", metavar="FILE", help="state file (default: live.state_path)")
    ex.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from .enforce.ipset import EnforceError
    from .enforce.store import StoreError

    args = parser().parse_args(argv)
    if args.command is None:
        args.command, args.func = "run", _run
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s ips-inline[%(process)d] %(levelname)s %(message)s")
    try:
        return args.func(args, load(_config_path(args)))
    except (ConfigError, PcapError, UserError, EnforceError, StoreError) as exc:
        print(f"ips-inline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
