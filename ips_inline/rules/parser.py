"""Rule text -> Rule objects: a subset of Suricata 7's rule language.

A rule Suricata would refuse (bad header, unbalanced quotes, a keyword value
that does not parse, a missing sid) is an Invalid error: the whole file is
rejected with file:line. A valid rule that uses what is not supported here
(another protocol, an unknown or unsupported keyword, a response buffer, a
pcre RE2 cannot run in linear time) is skipped with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import buffers as B
from .classification import CLASSTYPES, DEFAULT_PRIORITY
from .errors import Invalid, Unsupported
from .match import Bsize, Content, IntCmp, IsDataAt, Item, Pcre
from .pcre import compile_pcre
from .threshold import KINDS, TRACKS, ThresholdSpec
from .vars import AddressSet, PortSet, VarError, Variables

ACTIONS = {"alert": "alert", "drop": "drop", "reject": "reject", "rejectsrc": "reject",
           "rejectdst": "reject", "rejectboth": "reject", "pass": "pass"}
PROTOS: dict[str, frozenset[int] | None] = {
    "tcp": frozenset({6}), "udp": frozenset({17}), "icmp": frozenset({1, 58}),
    "icmpv4": frozenset({1}), "icmpv6": frozenset({58}), "ip": None,
    "http": frozenset({6}), "http1": frozenset({6}),
}
# Valid Suricata 7 protocols this engine has no parser for: skipped, not refused.
OTHER_PROTOS = frozenset({
    "tls", "ssl", "dns", "ssh", "smtp", "ftp", "ftp-data", "smb", "dcerpc", "nfs", "dhcp",
    "krb5", "snmp", "sip", "rdp", "rfb", "mqtt", "http2", "modbus", "dnp3", "enip", "ntp",
    "tftp", "ike", "ikev2", "quic", "bittorrent-dht", "telnet", "imap", "pop3", "ldap",
    "pgsql", "websocket", "sctp", "irc", "template", "pkthdr", "ipv4", "ipv6", "ip4",
    "ip6", "udp-pkt", "tcp-pkt", "tcp-stream", "mdns", "llmnr", "mysql", "doh2", "arp",
})

STICKY = {
    "http.uri": "http.uri", "http.uri.raw": "http.uri.raw", "http.method": "http.method",
    "http.header": "http.header", "http.header.raw": "http.header.raw",
    "http.header_names": "http.header_names", "http_header_names": "http.header_names",
    "http.user_agent": "http.user_agent", "http.host": "http.host",
    "http.host.raw": "http.host.raw", "http.cookie": "http.cookie",
    "http.request_body": "http.request_body", "http.request_line": "http.request_line",
    "http_request_line": "http.request_line", "http.protocol": "http.protocol",
    "http_protocol": "http.protocol", "http.start": "http.start", "http_start": "http.start",
    "file.data": "http.request_body", "file_data": "http.request_body",
    **{name: name for name in B.HEADER_BUFFERS},
    **{name.replace(".", "_"): name for name in B.HEADER_BUFFERS
       if name not in ("http.user_agent", "http.cookie")},
}
LEGACY = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_method": "http.method",
    "http_header": "http.header", "http_raw_header": "http.header.raw",
    "http_cookie": "http.cookie", "http_user_agent": "http.user_agent",
    "http_host": "http.host", "http_raw_host": "http.host.raw",
    "http_client_body": "http.request_body",
}
RESPONSE = frozenset({
    "http.stat_code", "http_stat_code", "http.stat_msg", "http_stat_msg",
    "http.response_line", "http_response_line", "http.response_body", "http_server_body",
    "http.server", "http_server", "http.location", "http_location", "http.response_header",
})
IGNORED = frozenset({"reference", "rawbytes", "target"})  # no effect on matching
_INT = re.compile(r"^-?\d+$")
_SID = re.compile(r"\bsid\s*:\s*(\d+)")
MAX_OFFSET = 1 << 20  # Suricata's bound on distance/within/offset/depth


@dataclass(frozen=True)
class FlowSpec:
    established: bool | None = None
    to_server: bool | None = None


@dataclass(frozen=True)
class FlagSpec:
    mode: str  # "exact", "all" (+), "any" (*), "not" (!)
    flags: int
    mask: int  # bits ignored


@dataclass
class Rule:
    sid: int
    gid: int
    rev: int
    msg: str
    classtype: str
    category: str
    severity: int
    action: str  # alert, drop, reject, pass
    metadata: dict[str, list[str]]
    file: str
    line: int
    protos: frozenset[int] | None
    http: bool
    src: AddressSet
    sport: PortSet
    dst: AddressSet
    dport: PortSet
    bidirectional: bool
    flow: FlowSpec | None
    flags: FlagSpec | None
    dsize: IntCmp | None
    itype: IntCmp | None
    groups: list[tuple[str, list[Item]]]
    fast: Content | None
    threshold: ThresholdSpec | None
    noalert: bool

    @property
    def phase(self) -> str:
        if not self.http:
            return "packet"
        return "body" if any(b in B.BODY_BUFFERS for b, _ in self.groups) else "head"


def sid_of(text: str) -> int | None:
    m = _SID.search(text)
    return int(m.group(1)) if m else None


# -- lexing ---------------------------------------------------------------

def split_header(text: str) -> list[str]:
    """White-space separated tokens; spaces inside [...] lists do not split."""
    tokens, cur, depth = [], [], 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch.isspace() and depth == 0:
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        tokens.append("".join(cur))
    if depth != 0:
        raise Invalid("unbalanced brackets in the rule header")
    return tokens


def split_options(body: str) -> list[tuple[str, str | None]]:
    """`name:value;` pairs. As in Suricata, only a backslash keeps a `;` from
    ending an option, inside quotes too: `msg:"a;b"` is an error there and here."""
    out: list[tuple[str, str | None]] = []
    cur: list[str] = []
    escaped = False
    for ch in body:
        if escaped:
            cur.append(ch)
            escaped = False
            continue
        if ch == "\\":
            cur.append(ch)
            escaped = True
            continue
        if ch == ";":
            _add_option("".join(cur), out)
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        raise Invalid(f"option {''.join(cur).strip()!r} is not terminated by ';'")
    return out


def _add_option(text: str, out: list[tuple[str, str | None]]) -> None:
    text = text.strip()
    if not text:
        return
    name, sep, value = text.partition(":")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise Invalid(f"bad option name {name!r}")
    out.append((name, value.strip() if sep else None))


def unquote(value: str, what: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise Invalid(f"{what} must be a quoted string, got {value!r}")
    out, i, inner = [], 0, value[1:-1]
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def content_bytes(value: str) -> tuple[bool, bytes]:
    """(negated, bytes) of `!"a|0d 0a|b"`."""
    negated = value.startswith("!")
    if negated:
        value = value[1:].lstrip()
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise Invalid(f"content must be a quoted string, got {value!r}")
    inner = value[1:-1]
    out = bytearray()
    hexmode, hexbuf, i = False, "", 0
    while i < len(inner):
        ch = inner[i]
        i += 1
        if hexmode:
            if ch == "|":
                if len(hexbuf) % 2:
                    raise Invalid(f"odd number of hex digits in {value!r}")
                out += bytes.fromhex(hexbuf)
                hexmode, hexbuf = False, ""
            elif ch in "0123456789abcdefABCDEF":
                hexbuf += ch
            elif not ch.isspace():
                raise Invalid(f"bad hex digit {ch!r} in {value!r}")
            continue
        if ch == "|":
            hexmode = True
        elif ch == "\\":
            if i >= len(inner) or inner[i] not in '\\";:|':
                raise Invalid(f"invalid escape in content {value!r}")
            out += inner[i].encode()
            i += 1
        elif ch == '"':
            raise Invalid(f"unescaped quote in content {value!r}")
        else:
            out += ch.encode("utf-8", "surrogateescape")
    if hexmode:
        raise Invalid(f"unterminated |hex| in content {value!r}")
    if not out:
        raise Invalid("empty content")
    return negated, bytes(out)


def parse_int(value: str | None, what: str, lo: int = 0, hi: int = MAX_OFFSET) -> int:
    if value is None or not _INT.match(value.strip()):
        raise Invalid(f"{what} needs an integer, got {value!r}")
    n = int(value)
    if not lo <= n <= hi:
        raise Invalid(f"{what} {n} out of range {lo}..{hi}")
    return n


def parse_intcmp(value: str | None, what: str, hi: int = 1 << 32) -> IntCmp:
    """Suricata's integer keywords: N, =N, !N, !=N, <N, >N, <=N, >=N, A<>B, A-B."""
    text = (value or "").replace(" ", "")
    m = re.fullmatch(r"(\d+)(?:<>|-)(\d+)", text)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a >= b or b > hi:
            raise Invalid(f"{what} range {value!r} is empty or too large")
        return IntCmp("<>", a, b)
    m = re.fullmatch(r"(<=|>=|!=|<|>|=|!)?(\d+)", text)
    if not m:
        raise Invalid(f"{what} needs a number or range, got {value!r}")
    op = {None: "=", "!=": "!"}.get(m.group(1), m.group(1))
    n = int(m.group(2))
    if n > hi:
        raise Invalid(f"{what} {n} too large")
    return IntCmp(op, n)


_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20,
              "E": 0x40, "C": 0x80, "2": 0x40, "1": 0x80}


def parse_flags(value: str | None) -> FlagSpec:
    if not value:
        raise Invalid("flags needs a value")
    want, _, mask_s = value.replace(" ", "").partition(",")
    mode, bits = "exact", 0
    for ch in want:
        if ch in "+*!":
            mode = {"+": "all", "*": "any", "!": "not"}[ch]
        elif ch == "0":
            continue
        elif ch.upper() in _FLAG_BITS:
            bits |= _FLAG_BITS[ch.upper()]
        else:
            raise Invalid(f"bad TCP flag {ch!r} in flags:{value}")
    mask = 0
    for ch in mask_s:
        if ch.upper() not in _FLAG_BITS:
            raise Invalid(f"bad TCP flag {ch!r} in the mask of flags:{value}")
        mask |= _FLAG_BITS[ch.upper()]
    return FlagSpec(mode, bits, mask)


def parse_flow(value: str | None) -> FlowSpec:
    est: bool | None = None
    to_server: bool | None = None
    for part in (p.strip() for p in (value or "").split(",")):
        if part == "established":
            est = True
        elif part == "not_established":
            est = False
        elif part in ("to_server", "from_client"):
            to_server = True
        elif part in ("to_client", "from_server"):
            to_server = False
        elif part in ("stateless", "no_stream", "no_frag"):
            continue  # every packet qualifies: we inspect packets, not the stream
        elif part in ("only_stream", "only_frag", "noalert"):
            raise Unsupported(f"flow:{part}")
        else:
            raise Invalid(f"bad flow option {part!r}")
    return FlowSpec(est, to_server)


def parse_threshold(value: str | None, kind: str | None) -> ThresholdSpec:
    """`type limit, track by_src, count 1, seconds 60`; detection_filter has no type."""
    fields_: dict[str, str] = {}
    for part in (p.strip() for p in (value or "").split(",")):
        key, _, val = part.partition(" ")
        if not val.strip():
            raise Invalid(f"threshold option {part!r} needs a value")
        fields_[key.strip()] = val.strip()
    kind = kind or fields_.get("type")
    if kind == "backoff":
        raise Unsupported("threshold type backoff")
    if kind not in KINDS:
        raise Invalid(f"threshold type must be limit, threshold or both, got {kind!r}")
    track = fields_.get("track")
    if track not in TRACKS:
        raise Invalid(f"threshold track must be one of {', '.join(TRACKS)}, got {track!r}")
    count = parse_int(fields_.get("count"), "threshold count", 1, 1 << 31)
    seconds = parse_int(fields_.get("seconds"), "threshold seconds", 1, 1 << 31)
    return ThresholdSpec(kind, track, count, float(seconds))


def parse_metadata(value: str | None, into: dict[str, list[str]]) -> None:
    for part in (p.strip() for p in (value or "").split(",")):
        if not part:
            continue
        key, _, val = part.partition(" ")
        into.setdefault(key.strip(), []).append(val.strip())


# -- building -------------------------------------------------------------

@dataclass
class _Builder:
    http_proto: bool
    items: list[Item] = field(default_factory=list)
    sticky: str | None = None
    last: Content | None = None
    opts: dict[str, object] = field(default_factory=dict)
    metadata: dict[str, list[str]] = field(default_factory=dict)
    uses_http: bool = False

    def default_buffer(self) -> str:
        return self.sticky or ("stream" if self.http_proto else "payload")

    def buffer_used(self, name: str) -> None:
        if name in B.HTTP_BUFFERS:
            self.uses_http = True

    def content(self, value: str | None, buffer: str | None = None) -> None:
        negated, data = content_bytes(value or "")
        buf = buffer or self.default_buffer()
        self.buffer_used(buf)
        self.last = Content(data, buf, negated=negated)
        self.items.append(self.last)

    def need_content(self, name: str) -> Content:
        if self.last is None:
            raise Invalid(f"{name} without a preceding content")
        return self.last

    def modifier(self, name: str, value: str | None) -> None:
        c = self.need_content(name)
        if name == "nocase":
            c.nocase = True
        elif name in ("depth", "offset"):
            if c.relative or c.startswith:
                raise Invalid(f"{name} mixed with distance/within/startswith")
            setattr(c, name, parse_int(value, name, 0 if name == "offset" else 1))
        elif name in ("distance", "within"):
            if c.depth is not None or c.offset is not None or c.startswith:
                raise Invalid(f"{name} mixed with depth/offset/startswith")
            lo = -MAX_OFFSET if name == "distance" else 1
            setattr(c, name, parse_int(value, name, lo))
        elif name == "startswith":
            if c.relative or c.depth is not None or c.offset is not None:
                raise Invalid("startswith mixed with depth/offset/distance/within")
            c.startswith, c.offset, c.depth = True, 0, len(c.pattern)
        elif name == "endswith":
            c.endswith = True
        elif name == "fast_pattern":
            c.fast_pattern = True
            if value and value != "only":
                m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", value)
                if not m:
                    raise Invalid(f"fast_pattern takes 'only' or offset,length: {value!r}")
                off, ln = int(m.group(1)), int(m.group(2))
                if ln < 1 or off + ln > len(c.pattern):
                    raise Invalid("fast_pattern offset,length outside the content")
                c.fp_chop = (off, ln)

    def check_content(self, c: Content) -> None:
        n = len(c.pattern)
        if c.depth is not None and c.depth < n:
            raise Invalid(f"depth {c.depth} is shorter than the content ({n} bytes)")
        if c.within is not None and c.within < n:
            raise Invalid(f"within {c.within} is shorter than the content ({n} bytes)")
        if c.buffer == "http.host" and not c.nocase and c.pattern != c.pattern.lower():
            raise Invalid("http.host is lowercased: its content must be lowercase")


def _apply(b: _Builder, name: str, value: str | None) -> None:  # noqa: C901 - one dispatch
    o = b.opts
    if name == "content":
        b.content(value)
    elif name == "uricontent":
        b.content(value, "http.uri")
    elif name in ("nocase", "depth", "offset", "distance", "within", "startswith",
                  "endswith", "fast_pattern"):
        b.modifier(name, value)
    elif name in LEGACY:
        c = b.need_content(name)
        c.buffer = LEGACY[name]
        b.buffer_used(c.buffer)
    elif name in STICKY:
        b.sticky = STICKY[name]
        b.buffer_used(b.sticky)
    elif name == "pkt_data":
        b.sticky = None
    elif name in RESPONSE:
        raise Unsupported(f"{name}: responses are not inspected")
    elif name == "pcre":
        p = compile_pcre(value or "")
        buf = p.buffer or b.default_buffer()
        b.buffer_used(buf)
        b.items.append(Pcre(p.regex, p.source, buf, p.negated, p.relative, p.anchored,
                            p.eol_retry))
    elif name == "isdataat":
        parts = [s.strip() for s in (value or "").split(",")]
        negated = parts[0].startswith("!")
        n = parse_int(parts[0].lstrip("!"), "isdataat")
        relative = "relative" in parts[1:]
        buf = b.items[-1].buffer if relative and b.items else b.default_buffer()
        b.items.append(IsDataAt(n, buf, relative, negated))
    elif name == "bsize":
        buf = b.last.buffer if b.last is not None else b.default_buffer()
        b.items.append(Bsize(parse_intcmp(value, "bsize"), buf))
    elif name == "urilen":
        num, _, kind = (value or "").partition(",")
        kind = kind.strip() or "norm"
        if kind not in ("norm", "raw"):
            raise Invalid(f"urilen takes norm or raw, got {kind!r}")
        buf = "http.uri" if kind == "norm" else "http.uri.raw"
        b.buffer_used(buf)
        b.items.append(Bsize(parse_intcmp(num, "urilen"), buf))
    elif name in ("msg",):
        o["msg"] = unquote(value or '""', "msg")
    elif name in ("sid", "rev", "gid", "priority"):
        lo = 1 if name in ("sid", "gid", "priority") else 0
        o[name] = parse_int(value, name, lo, (1 << 32) - 1)
    elif name == "classtype":
        if value not in CLASSTYPES:
            raise Unsupported(f"unknown classtype {value!r}")
        o["classtype"] = value
    elif name == "metadata":
        parse_metadata(value, b.metadata)
    elif name == "flow":
        o["flow"] = parse_flow(value)
    elif name == "flags":
        o["flags"] = parse_flags(value)
    elif name == "dsize":
        o["dsize"] = parse_intcmp(value, "dsize", 65535)
    elif name == "itype":
        o["itype"] = parse_intcmp(value, "itype", 255)
    elif name == "threshold":
        o["threshold"] = parse_threshold(value, None)
    elif name == "detection_filter":
        o["threshold"] = parse_threshold(value, "detection_filter")
    elif name == "noalert":
        o["noalert"] = True
    elif name not in IGNORED:
        raise Unsupported(f"unsupported keyword {name}")


def _fast_pattern(items: list[Item]) -> Content | None:
    positives = [c for c in items if isinstance(c, Content) and not c.negated]
    chosen = [c for c in positives if c.fast_pattern]
    if chosen:
        return chosen[0]
    best: Content | None = None
    for c in positives:  # the longest, the first of equals (Suricata also weighs buffers)
        if best is None or len(c.pattern) > len(best.pattern):
            best = c
    return best


def _groups(items: list[Item]) -> list[tuple[str, list[Item]]]:
    out: dict[str, list[Item]] = {}
    for it in items:
        out.setdefault(it.buffer, []).append(it)
    return list(out.items())


def parse_rule(text: str, variables: Variables, file: str, line: int) -> Rule:
    text = text.strip()
    open_at = text.find("(")
    if open_at < 0 or not text.endswith(")"):
        raise Invalid("a rule is 'action proto src sport -> dst dport (options)'")
    header = split_header(text[:open_at])
    if len(header) != 7:
        raise Invalid(f"the header needs 7 fields, got {len(header)}: {text[:open_at].strip()!r}")
    action_s, proto_s, src_s, sport_s, direction, dst_s, dport_s = header
    action = ACTIONS.get(action_s.lower())
    if action is None:
        raise Invalid(f"unknown action {action_s!r}")
    proto_l = proto_s.lower()
    if proto_l in OTHER_PROTOS:
        raise Unsupported(f"unsupported protocol {proto_s}")
    if proto_l not in PROTOS:
        raise Invalid(f"unknown protocol {proto_s!r}")
    if direction not in ("->", "<>"):
        raise Invalid(f"direction must be -> or <>, got {direction!r}")
    try:
        src, dst = variables.address(src_s), variables.address(dst_s)
        sport, dport = variables.port(sport_s), variables.port(dport_s)
    except VarError as exc:
        if "unknown" in str(exc):
            raise Unsupported(str(exc)) from None
        raise Invalid(str(exc)) from None
    http_proto = proto_l in ("http", "http1")
    b = _Builder(http_proto)
    for name, value in split_options(text[open_at + 1:-1]):
        _apply(b, name, value)
    return _finish(b, action, proto_l, src, sport, dst, dport, direction == "<>", file, line)


def _finish(b: _Builder, action: str, proto: str, src: AddressSet, sport: PortSet,
            dst: AddressSet, dport: PortSet, bidir: bool, file: str, line: int) -> Rule:
    o = b.opts
    if "sid" not in o:
        raise Invalid("rule has no sid")
    http = b.http_proto or b.uses_http
    if http and proto not in ("http", "http1", "tcp"):
        raise Invalid(f"http keywords in a {proto} rule")
    if http:  # a tcp rule with http keywords is an http rule (Suricata does the same)
        for it in b.items:
            if it.buffer == "payload":
                it.buffer = "stream"
        if o.get("dsize") is not None:
            raise Unsupported("dsize in an http rule (it has no packet payload)")
        flow = o.get("flow")
        if isinstance(flow, FlowSpec) and flow.to_server is False:
            raise Unsupported("flow:to_client in an http rule: responses are not inspected")
    for it in b.items:
        if isinstance(it, Content):
            b.check_content(it)
    classtype = str(o.get("classtype", ""))
    desc, prio = CLASSTYPES.get(classtype, ("", DEFAULT_PRIORITY))
    return Rule(
        sid=int(o["sid"]), gid=int(o.get("gid", 1)), rev=int(o.get("rev", 0)),
        msg=str(o.get("msg", "")), classtype=classtype, category=desc,
        severity=int(o.get("priority", prio)), action=action, metadata=b.metadata,
        file=file, line=line, protos=PROTOS[proto], http=http, src=src, sport=sport,
        dst=dst, dport=dport, bidirectional=bidir,
        flow=o.get("flow"), flags=o.get("flags"), dsize=o.get("dsize"),  # type: ignore[arg-type]
        itype=o.get("itype"), groups=_groups(b.items),  # type: ignore[arg-type]
        fast=_fast_pattern(b.items), threshold=o.get("threshold"),  # type: ignore[arg-type]
        noalert=bool(o.get("noalert", False)),
    )


@dataclass(frozen=True)
class Skipped:
    file: str
    line: int
    sid: int | None
    reason: str


def parse_text(text: str, file: str, variables: Variables) -> tuple[list[Rule], list[Skipped]]:
    """Rules of one file; Invalid carries "line: message" for the caller."""
    rules: list[Rule] = []
    skipped: list[Skipped] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + lines[i]
            i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            rules.append(parse_rule(stripped, variables, file, start + 1))
        except Unsupported as exc:
            skipped.append(Skipped(file, start + 1, sid_of(stripped), str(exc)))
        except Invalid as exc:
            raise Invalid(f"{start + 1}: {exc}") from None
    return rules, skipped
