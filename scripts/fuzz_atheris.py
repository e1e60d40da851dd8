#!/usr/bin/env python3
"""Coverage-guided fuzzing of the engine with atheris (libFuzzer): `make fuzz`,
not part of `make test` (tests/test_fuzz.py is the short hypothesis run).

One input is a few packets, each framed as a 2-byte big-endian length and
the L3 bytes; seeds are runs of consecutive packets from pcaps/, so mutations
start from real handshakes, HTTP requests, scans and fragments. One engine
lives across inputs, with small tables, so state carries over and its
bounds are exercised. Checked after every packet and every input:
  - no exception escapes process(), and none is caught inside it either
    (exceptions_total and the decoder's catch-all stay 0: each would be a bug);
  - every packet gets exactly one verdict (DROP, ACCEPT or BYPASS);
  - every table stays within its bound.
A failed check raises, and libFuzzer saves the input under build/fuzz/.

    scripts/fuzz_atheris.py [libFuzzer flags...]    e.g. -max_total_time=300 -jobs=2
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["ips_inline"]):
    from ips_inline.bans import BanManager, RecordingEnforcer, Whitelist
    from ips_inline.config import Config
    from ips_inline.engine import ACCEPT, BYPASS, DROP, Engine
    from ips_inline.eve import Collect
    from ips_inline.sources.pcap import read_packets

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "fuzz"
LIMIT = 64  # entries per table: small, so eviction paths run constantly
MAX_PACKETS = 16  # per input
SEED_RUN = 6  # consecutive packets per seed
VERDICTS = frozenset((DROP, ACCEPT, BYPASS))
_LEN = struct.Struct("!H")


class Target:
    """The engine under test and its clock."""

    def __init__(self) -> None:
        cfg = Config()
        cfg.engine.max_sources = cfg.engine.max_flows = cfg.bans.max_tracked = LIMIT
        self.sink = Collect()
        bans = BanManager(cfg.bans, Whitelist(cfg.engine.whitelist), RecordingEnforcer())
        self.engine = Engine(cfg, bans, self.sink)
        self.now = 1_700_000_000.0
        self.inputs = 0

    def run(self, data: bytes) -> None:
        self.inputs += 1
        # Now and then a long pause, so the idle expiry and sweep paths run too.
        self.now += 400.0 if self.inputs % 997 == 0 else 0.001
        stats = self.engine.stats
        for packet in split(data):
            before = stats.packets
            self.now += 0.0005
            verdict = self.engine.process(packet, self.now)
            if verdict not in VERDICTS or stats.packets != before + 1:
                raise AssertionError(f"verdict {verdict!r}, {stats.packets - before} counted")
        self.check()
        self.sink.records.clear()  # the EVE sink is not under test; keep memory flat

    def check(self) -> None:
        stats = self.engine.stats
        if stats.exceptions or stats.malformed["decode_error"]:
            raise AssertionError(f"engine caught {stats.exceptions} exceptions, "
                                 f"{stats.malformed['decode_error']} decoder errors")
        for table in self.engine.tables():
            if len(table) > LIMIT:
                raise AssertionError(f"table {table.name} holds {len(table)} > {LIMIT}")


def split(data: bytes) -> list[bytes]:
    """Framed packets out of one input; a short last frame is taken as is."""
    packets, off = [], 0
    while off < len(data) and len(packets) < MAX_PACKETS:
        if off + 2 > len(data):
            packets.append(data[off:])
            break
        (size,) = _LEN.unpack_from(data, off)
        packets.append(data[off + 2:off + 2 + size])
        off += 2 + size
    return packets


def frame(packets: list[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(p)) + p for p in packets)


def write_seeds(corpus: Path) -> None:
    """Runs of consecutive IP packets from every capture in pcaps/."""
    corpus.mkdir(parents=True, exist_ok=True)
    for capture in sorted(REPO.glob("pcaps/*.pcap*")):
        packets = [p for _ts, p in read_packets(str(capture)) if p]
        for n in range(0, min(len(packets), 60), SEED_RUN):
            run = packets[n:n + SEED_RUN]
            (corpus / f"{capture.stem}-{n:03d}").write_bytes(frame(run))


def main() -> None:
    corpus = OUT / "corpus"
    write_seeds(corpus)
    target = Target()
    args = [sys.argv[0], f"-artifact_prefix={OUT}/", "-max_len=8192", *sys.argv[1:]]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        args.append(str(corpus))
    atheris.Setup(args, target.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
