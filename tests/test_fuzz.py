"""Property tests: no input bytes make the engine raise, every packet gets a
verdict, and state stays within its bounds."""

from __future__ import annotations

from conftest import Harness
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import Conn, http_get, ping, tcp, udp

from ips_inline.config import Config

SEEDS = [ping(), tcp(), tcp(flags="FPU"), udp(), tcp(flags="PA", payload=http_get("/?a=1")),
         ping(src="fd77::30", dst="fd77::10"), *Conn().handshake()]


def _small_harness() -> Harness:
    cfg = Config()
    cfg.engine.max_sources = cfg.engine.max_flows = 64
    return Harness(cfg)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    h = _small_harness()
    verdicts = h.feed(*chunks)
    assert all(isinstance(v, bool) for v in verdicts)
    assert h.engine.stats.packets == len(chunks)
    assert h.engine.stats.exceptions == 0


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                         max_size=8), st.integers(0, 200))
def test_mutated_packets_never_raise(seed: bytes, flips, cut: int) -> None:
    raw = bytearray(seed)
    for pos, value in flips:
        if pos < len(raw):
            raw[pos] = value
    h = _small_harness()
    mutated = bytes(raw[: max(len(raw) - cut, 0)])
    assert isinstance(h.feed(mutated, mutated)[0], bool)
    assert h.engine.stats.exceptions == 0
    assert all(len(t) <= 64 for t in h.engine.tables())
