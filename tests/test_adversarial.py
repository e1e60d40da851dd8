"""A hostile client (issue 12): what an attacker sends that our other tests do
not. Each class: the attack passes inspection, stalls it, or gets an innocent
address banned on the old engine; here it must not.

Through the production engine as replay drives it (packets in, verdicts out,
conntrack state inferred from both directions, as in a capture).
"""

from __future__ import annotations

import random
import re

import pytest
from conftest import Harness, swap_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packets import ATTACKER, CLIENT, VICTIM, Conn, http_get, http_post, tcp
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.packet import Raw

from ips_inline.config import Config

SQLI = "1'+OR+'1'='1"
SQLI_ENC = "1%27%20OR%20%271%27%3D%271"


def conn_of(h: Harness, src: str = ATTACKER, sport: int = 40000) -> Conn:
    conn = Conn(src=src, sport=sport)
    assert all(h.feed(*conn.handshake()))
    return conn


def blocked(h: Harness, conn: Conn, *pieces: bytes) -> bool:
    """Send the pieces; True if one was dropped (the connection is cut)."""
    return not all(h.feed(*[conn.send(p) for p in pieces]))


# -- 1. one request stalls or hangs the daemon ----------------------------------------------
def test_an_endless_head_fails_closed_and_others_are_still_inspected(harness) -> None:
    conn = conn_of(harness)
    head = b"GET / HTTP/1.1\r\nHost: victim\r\nX-Pad: " + b"a" * 17000
    pieces = [head[i:i + 1400] for i in range(0, len(head), 1400)]
    assert blocked(harness, conn, *pieces)
    assert harness.engine.stats.stream_errors["head_too_long"] == 1
    other = conn_of(harness, src=CLIENT, sport=41000)
    assert blocked(harness, other, http_get(f"/x?id={SQLI_ENC}"))  # still inspected


@pytest.mark.parametrize("filler", ["<", "/*", "$(", "(){", "`", "< on", "\n"])
def test_every_value_reaches_the_detectors_in_bounded_windows(filler: str) -> None:
    """Long values are cut into overlapping windows: no regex or libinjection
    call ever sees more than MAX_VALUE characters (the cost of one call is
    bounded), and an attack at the end of 32 KB of filler is still found."""
    from ips_inline.http.request import MAX_VALUE

    h = Harness()
    seen: list[int] = []

    def spy_on(det):
        def spy(pkt, flow, now):
            seen.extend(len(v) for v in flow.request.values)
            return det.inspect(pkt, flow, now)
        return spy

    swap_payload(h.engine, spy_on)
    conn = conn_of(h)
    body = "q=" + (filler * (32768 // len(filler))).replace("&", "") + f"&id={SQLI}"
    assert blocked(h, conn, *split(http_post("/f", body), 1400))
    assert seen and max(seen) <= MAX_VALUE
    assert h.alert_detectors()


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>`$(){}; on=x\n*/", max_size=60))
def test_linear_matchers_equal_the_regexes_they_replace(text: str) -> None:
    from ips_inline.detectors.http_attacks import _enclosed, _handler_in_tag, _shellshock
    from ips_inline.http.normalize import strip_comments

    assert _handler_in_tag(text) == bool(re.search(r"<[^>]*\son[a-z]+\s*=", text))
    assert _enclosed(text, "$(", ")") == bool(re.search(r"\$\([^)]+\)", text))
    assert _enclosed(text, "`", "`") == bool(re.search(r"`[^`]+`", text))
    assert _shellshock(text) == bool(re.search(r"\(\)\s*\{[^}]*\}\s*;", text))
    assert strip_comments(text) == re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


# -- 2. one token switches inspection off ---------------------------------------------------
def test_a_lone_surrogate_escape_does_not_switch_inspection_off(harness) -> None:
    conn = conn_of(harness)
    assert blocked(harness, conn, http_get(f"/x?a=%uD800&b=%uDBFF%uDC00&id={SQLI_ENC}"))
    assert harness.engine.stats.exceptions == 0 and harness.alert_detectors() == ["sqli"]


def test_a_content_length_of_4301_digits_fails_closed(harness) -> None:
    conn = conn_of(harness)
    head = b"POST /x HTTP/1.1\r\nHost: v\r\nContent-Length: " + b"9" * 4301 + b"\r\n\r\n"
    assert blocked(harness, conn, head)
    assert harness.engine.stats.exceptions == 0
    assert harness.engine.stats.stream_errors["bad_length"] == 1


def test_an_exception_inside_stream_inspection_blocks_the_connection(harness) -> None:
    def boom_if_xss(det):
        def boom(pkt, flow, now):
            if det.name == "xss":
                raise RuntimeError("detector bug")
            return det.inspect(pkt, flow, now)
        return boom

    swap_payload(harness.engine, boom_if_xss)
    conn = conn_of(harness)
    assert blocked(harness, conn, http_get("/benign?q=1"))
    assert harness.engine.stats.exceptions == 1
    assert harness.engine.stats.stream_errors["exception"] == 1
    assert blocked(harness, conn, b"more")  # fail closed: the connection stays cut


# -- 3. the stream parser gives up, and the rest of the connection is free ---------------
ATTACK_SHAPES = {
    "unknown_method": f"PURGE /x?id={SQLI_ENC} HTTP/1.1\r\nHost: v\r\n\r\n".encode(),
    "leading_crlf": f"\r\n\r\nGET /x?id={SQLI_ENC} HTTP/1.1\r\nHost: v\r\n\r\n".encode(),
    "http09": f"GET /x?id={SQLI_ENC}\r\n".encode(),
    "lone_name": f"GET /x?{SQLI}=asc HTTP/1.1\r\nHost: v\r\n\r\n".encode(),
    "obs_fold": b"GET / HTTP/1.1\r\nHost: v\r\nX-Note: hello\r\n <script>alert(1)</script>\r\n\r\n",
    "accept_language": b"GET / HTTP/1.1\r\nHost: v\r\nAccept-Language: ../../etc/passwd\r\n\r\n",
    "body_never_comes": f"GET /x?id={SQLI_ENC} HTTP/1.1\r\nContent-Length: 100\r\n\r\n".encode(),
    "pipelined_after_crlf": (b"GET /a HTTP/1.1\r\nHost: v\r\n\r\n\r\n"
                             + f"GET /x?id={SQLI_ENC} HTTP/1.1\r\n\r\n".encode()),
    "proxy_protocol": (b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n"
                       + f"GET /x?id={SQLI_ENC} HTTP/1.1\r\n\r\n".encode()),
    "chunk_zeros": (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                    + f"00000000{len('id=' + SQLI):x}\r\nid={SQLI}\r\n0\r\n\r\n".encode()),
}


@pytest.mark.parametrize("shape", sorted(ATTACK_SHAPES))
def test_request_shapes_servers_accept_are_inspected(harness, shape: str) -> None:
    conn = conn_of(harness)
    assert blocked(harness, conn, ATTACK_SHAPES[shape]), shape


def test_an_attack_after_16_kb_of_padding_in_the_same_form(harness) -> None:
    conn = conn_of(harness)
    body = "pad=" + "a" * 17000 + f"&id={SQLI}"
    assert blocked(harness, conn, *split(http_post("/f", body), 1400))
    assert harness.alert_detectors() == ["sqli"]


def test_an_attack_in_the_keep_alive_request_after_a_big_body(harness) -> None:
    conn = conn_of(harness)
    data = http_post("/f", "pad=" + "a" * 20000) + http_get(f"/x?id={SQLI_ENC}")
    assert blocked(harness, conn, *split(data, 1400))


def test_keep_alive_requests_stay_inspected_past_the_bypass_count(harness) -> None:
    """Clean requests never earn an HTTP connection a bypass of its data."""
    conn = conn_of(harness)
    for i in range(harness.cfg.engine.bypass_after_packets + 5):
        assert harness.feed(conn.send(http_get(f"/page/{i}"))) == [True]
    assert blocked(harness, conn, http_get(f"/x?id={SQLI_ENC}"))


def test_data_on_a_syn_is_inspected(harness) -> None:
    syn = tcp(sport=40010, flags="S", seq=700, payload=http_get(f"/x?id={SQLI_ENC}"))
    assert harness.feed(syn) == [False]


def test_an_rst_outside_the_window_does_not_end_the_connection(harness) -> None:
    conn = conn_of(harness)
    assert harness.feed(conn.send(b"GET /x?id=1"))  # half a request
    rst = tcp(sport=conn.sport, flags="R", seq=conn.seq + 5000)
    harness.feed(rst)  # the host ignores it (RFC 5961): so must the engine
    assert blocked(harness, conn, f"{SQLI_ENC[1:]} HTTP/1.1\r\nHost: v\r\n\r\n".encode())


def test_a_data_segment_without_ack_is_not_taken_into_the_stream(harness) -> None:
    """The host drops a data segment without ACK (conntrack: INVALID); the
    engine must not take its bytes, then drop the real ones at that sequence."""
    conn = conn_of(harness)
    fake = tcp(sport=conn.sport, flags="P", seq=conn.seq, payload=b"GET /other HTTP/1.1\r\n")
    assert harness.feed(fake) == [False]
    assert harness.feed(conn.send(http_get("/real"))) == [True]
    assert harness.engine.stats.verdicts[10] == 0  # no stream_conflict


def test_urgent_data_on_a_stream_fails_closed(harness) -> None:
    conn = conn_of(harness)
    assert harness.feed(conn.send(b"GET /x?id=1%27 UNI", flags="PAU")) == [False]
    assert harness.engine.stats.stream_errors["urgent"] == 1


def test_a_new_connection_on_the_4_tuple_starts_afresh(harness) -> None:
    """An ISN just below the old connection's next sequence number made the
    new connection's data look like a retransmission: trimmed, uninspected."""
    old = conn_of(harness, sport=40020)
    assert harness.feed(old.send(http_get("/" + "a" * 500)))
    harness.feed(tcp(sport=40020, flags="FA", seq=old.seq, ack=old.ack))
    new = Conn(sport=40020)
    new.seq = old.seq - 5000  # older than the old flow's tail: "taken long ago", never compared
    harness.feed(*new.handshake())
    assert blocked(harness, new, http_get(f"/x?id={SQLI_ENC}"))


def test_a_connection_evicted_mid_request_fails_closed_when_it_comes_back() -> None:
    cfg = Config()
    cfg.engine.max_flows = 64
    h = Harness(cfg)
    conn = conn_of(h, sport=40030)
    assert h.feed(conn.send(b"GET /x?id=1"))  # half a request
    for i in range(80):  # enough real connections to push it out
        other = Conn(src=CLIENT, sport=50000 + i)
        h.feed(*other.handshake())
    assert blocked(h, conn, f"{SQLI_ENC[1:]} HTTP/1.1\r\n\r\n".encode())
    assert h.engine.stats.stream_errors["lost"] == 1


def test_a_pickup_mid_request_on_an_http_port_fails_closed(harness) -> None:
    """A restart (or an expiry) while a request is half sent: the rest arrives on a
    connection the engine picks up. It never saw the request line, so it cannot
    tell a query from a body; on $HTTP_PORTS the connection is cut."""
    rest = f"?id={SQLI_ENC} HTTP/1.1\r\nHost: victim\r\n\r\n".encode()
    assert blocked(harness, Conn(sport=40035), rest)
    assert harness.engine.stats.stream_errors["mid_request"] == 1
    assert not harness.banned()  # unproven: nothing to ban for


def test_a_pickup_at_a_request_start_is_inspected(harness) -> None:
    assert blocked(harness, Conn(sport=40036), http_get(f"/x?id={SQLI_ENC}"))
    assert harness.alert_detectors() == ["sqli"]
    assert harness.engine.stats.stream_errors["mid_request"] == 0


def test_a_pickup_of_other_protocols_off_http_ports_is_accepted(harness) -> None:
    tls = bytes.fromhex("1703030040") + bytes(range(64))  # TLS application data
    conn = Conn(sport=40037, dport=443)
    assert harness.feed(conn.send(tls), conn.send(tls)) == [True, True]
    assert harness.engine.stats.stream_errors["mid_request"] == 0


def test_a_tunnel_after_a_picked_up_request_is_not_mid_request(harness) -> None:
    """An Upgrade the engine saw the request for: later bytes are the tunnel's."""
    conn = Conn(sport=40038)
    up = b"GET /ws HTTP/1.1\r\nHost: v\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert harness.feed(conn.send(up), conn.send(b"\x81\x05hello")) == [True, True]
    assert harness.engine.stats.stream_errors["mid_request"] == 0


def test_ipv6_with_a_long_extension_chain_is_inspected(harness) -> None:
    conn = Conn(src="fd77::30", dst="fd77::10", sport=40040)
    harness.feed(*conn.handshake())
    seg = IPv6(conn.send(http_get(f"/x?id={SQLI_ENC}")))
    chain = IPv6(src=seg.src, dst=seg.dst)
    for _ in range(9):
        chain = chain / IPv6ExtHdrDestOpt()
    assert harness.feed(bytes(chain / seg[TCP])) == [False]


def test_a_syn_with_a_broken_last_option_is_tracked_and_its_attacks_ban(harness) -> None:
    for i in range(3):
        sport = 40050 + i
        syn = IP(src=ATTACKER, dst=VICTIM) / TCP(sport=sport, dport=80, flags="S", seq=100,
                                                   options=[("MSS", 1460)]) / Raw()
        raw = bytearray(bytes(syn))
        raw += b"\x08\x0a"  # a timestamp option cut short, inside the header
        raw[32] = (raw[32] & 0x0F) | (((len(raw) - 20 + 2) // 4) << 4)
        raw += b"\x00\x00"
        raw[2:4] = len(raw).to_bytes(2, "big")
        conn = Conn(sport=sport)
        conn.seq = 101
        harness.feed(bytes(raw), conn.synack(), conn.final_ack(),
                     conn.send(http_get(f"/x?id={SQLI_ENC}")))
    assert harness.banned() == {ATTACKER: "sqli"}


# -- 4. forged packets get an innocent address banned -----------------------------------------
def test_a_forged_handshake_never_bans(harness) -> None:
    """SYN, an ACK with a guessed number, an attack: three times. The host's
    SYN-ACK went to the real address; the forger never saw its number."""
    for i in range(3):
        conn = Conn(src=CLIENT, sport=45000 + i)
        syn, synack = conn.syn(), conn.synack()
        guessed = tcp(CLIENT, sport=conn.sport, flags="A", seq=conn.seq, ack=123456)
        attack = tcp(CLIENT, sport=conn.sport, flags="PA", seq=conn.seq, ack=123456,
                     payload=http_get(f"/x?id={SQLI_ENC}"))
        harness.feed(syn, synack, guessed, attack)
    assert not harness.banned()


def test_a_forged_segment_each_time_a_ban_lapses_never_escalates(harness) -> None:
    for _round in range(5):
        harness.feed(*[tcp(CLIENT, flags="", dport=1000 + p) for p in range(6)])
        harness.now += harness.cfg.bans.base_duration + 1
    durations = [d for _ip, d, _det in harness.enforcer.bans]
    assert durations and set(durations) == {harness.cfg.bans.base_duration}


def test_one_forged_stealth_segment_bans_nobody(harness) -> None:
    for flags in ("", "F", "FPU"):
        assert harness.feed(tcp(CLIENT, flags=flags, dport=22)) == [False]
    assert not harness.banned()


def test_forged_data_per_source_port_does_not_block_later_connections(harness) -> None:
    for port in range(46000, 46010):
        forged = tcp(CLIENT, sport=port, flags="PA", seq=77, ack=1,
                     payload=b"GET /?q=<script>alert(1)</script> HTTP/1.1\r\n\r\n")
        harness.feed(forged)
    for port in range(46000, 46010):
        conn = Conn(src=CLIENT, sport=port)
        assert all(harness.feed(*conn.handshake(), conn.send(http_get("/home"))))
    assert not harness.banned()


# -- 5. memory outside the budget ---------------------------------------------------------
def test_mid_stream_buffers_are_charged_to_the_budget_and_bounded() -> None:
    cfg = Config()
    cfg.engine.max_flows = 2048
    h = Harness(cfg)
    mem = h.engine.flows.mem
    mem.limit = 4 << 20
    rng = random.Random(5)
    for i in range(4000):  # spoofed pickups, each a half-sent 8 KB head
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        head = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 8000
        h.feed(tcp(src, sport=20000 + i % 40000, flags="PA", seq=5, ack=1, payload=head),
               step=0.0001)
    assert len(h.engine.flows.picked) <= cfg.engine.max_flows // 16
    assert mem.used <= mem.limit
    flows = list(h.engine.flows.picked.data.values())
    assert sum(f.http.held for f in flows if f.http) <= mem.used  # HTTP buffers counted too


def test_a_blocked_connection_gives_its_buffers_back(harness) -> None:
    conn = conn_of(harness)
    attack = f"&id={SQLI}".encode()
    head = f"POST /f HTTP/1.1\r\nContent-Length: {1000 + len(attack)}\r\n\r\n".encode()
    assert harness.feed(conn.send(head + b"a=" + b"a" * 998))
    assert harness.engine.flows.mem.used > 0
    assert blocked(harness, conn, attack)  # the body's end: the form is read, the attack found
    assert harness.engine.flows.mem.used == 0


# -- a property: attacks anywhere a server parses them are blocked ------------------------------
PLACES = ("path", "value", "name", "cookie", "header", "form", "json", "multipart", "xml")
ATTACKS = {"sqli": "1' OR '1'='1", "xss": "<script>alert(1)</script>",
           "path_traversal": "../../../../etc/passwd", "cmd_injection": "; cat /etc/shadow"}


def request_with(place: str, attack: str, rnd: random.Random) -> bytes:
    from urllib.parse import quote

    method = rnd.choice(["GET", "POST", "PUT", "PURGE", "get", "X-CUSTOM"])
    lead = rnd.choice(["", "\r\n", "\r\n\r\n"])
    enc = quote(attack)
    target, headers, body, ctype = "/app", [("Host", "victim")], "", ""
    if place == "path":
        target = "/app/" + enc
    elif place == "value":
        target = f"/app?a=1&q={enc}"
    elif place == "name":
        target = f"/app?{enc}=1"
    elif place == "cookie":
        headers.append(("Cookie", f"s=1; t={enc}"))
    elif place == "header":
        headers.append((rnd.choice(["User-Agent", "Referer", "X-Forwarded-For",
                                    "Accept-Language", "X-Anything"]), attack))
    elif place == "form":
        body, ctype = f"a=1&b={enc}", "application/x-www-form-urlencoded"
    elif place == "json":
        value = attack.replace("'", "\\u0027")
        body, ctype = f'{{"a": 1, "b": "{value}"}}', "application/json"
    elif place == "multipart":
        ctype = "multipart/form-data; boundary=XyZ"
        body = ("--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n"
                f"{attack}\r\n--XyZ--\r\n")
    elif place == "xml":
        body = f"<r><v>{attack.replace('<', '&lt;')}</v></r>"
        ctype = "text/xml"
    if ctype:
        headers.append(("Content-Type", ctype))
    rnd.shuffle(headers)
    if body:
        if rnd.random() < 0.5:
            headers.append(("Transfer-Encoding", "chunked"))
            data = body.encode()
            body_bytes = b"".join(f"{len(data[i:i + 7]):x}\r\n".encode() + data[i:i + 7]
                                  + b"\r\n" for i in range(0, len(data), 7)) + b"0\r\n\r\n"
        else:
            headers.append(("Content-Length", str(len(body.encode()))))
            body_bytes = body.encode()
    else:
        body_bytes = b""
    eol = rnd.choice(["\r\n", "\n"])
    head = f"{lead}{method} {target} HTTP/1.1{eol}" + "".join(
        f"{k}: {v}{eol}" for k, v in headers) + eol
    return head.encode() + body_bytes


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PLACES), st.sampled_from(sorted(ATTACKS)), st.integers(0, 2**32),
       st.integers(1, 64))
def test_an_attack_placed_anywhere_a_server_parses_it_is_blocked(place: str, kind: str,
                                                                 seed: int, size: int) -> None:
    rnd = random.Random(seed)
    h = Harness()
    conn = conn_of(h)
    request = request_with(place, ATTACKS[kind], rnd)
    assert blocked(h, conn, *split(request, size)), request
    assert h.engine.stats.exceptions == 0
    assert h.alert_detectors(), request


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"GET ", b"/x", b"?", b"=", b"&", b" HTTP/1.1", b"\r\n",
                                 b"\n", b": ", b"Transfer-Encoding: chunked", b"0", b"f",
                                 b"Content-Length: 3", b"%u", b"D800", b"%uD800", b"\x00",
                                 b"\xff", b"Content-Length: " + b"9" * 4301, b"?a=%uDFFF",
                                 b"<", b"'", b"PRI * HTTP/2.0", b"PROXY ", b" "]),
                max_size=40).map(b"".join), st.integers(1, 17))
def test_http_ish_streams_never_raise(data: bytes, size: int) -> None:
    h = Harness()
    conn = conn_of(h)
    h.feed(*[conn.send(piece) for piece in split(data, size)])
    assert h.engine.stats.exceptions == 0


_VALUE_PIECES = [b"a", b"%", b"%u", b"D800", b"%uD800", b"%uDFFF", b"%c0%ae", b"%25", b"+",
                 b"&#x", b"&#55296;", b";", b"'", b"<", b"/*", b"\xff", b"\x00", b"=", b"&"]
_HEADER_PIECES = [b"X-A: 1", b"Content-Length: 5", b"Content-Length: " + b"9" * 4301,
                  b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b" folded",
                  b"Cookie: a=%uD800", b"Content-Type: application/json",
                  b"Content-Type: multipart/form-data; boundary=b", b"Content-Type: text/xml",
                  b"Accept: */*", b"no colon"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_VALUE_PIECES), max_size=8).map(b"".join),
       st.lists(st.sampled_from(_HEADER_PIECES), max_size=4),
       st.lists(st.sampled_from(_VALUE_PIECES + [b"{", b"}", b'"', b"--b", b"\r\n"]),
                max_size=12).map(b"".join),
       st.integers(1, 9))
def test_request_shaped_streams_never_raise(value: bytes, headers: list[bytes], body: bytes,
                                            size: int) -> None:
    """Request skeletons with hostile bytes in each slot: never an engine error."""
    h = Harness()
    conn = conn_of(h)
    data = (b"POST /x?a=" + value + b" HTTP/1.1\r\n" + b"".join(x + b"\r\n" for x in headers)
            + b"\r\n" + body)
    h.feed(*[conn.send(piece) for piece in split(data, size)])
    assert h.engine.stats.exceptions == 0
