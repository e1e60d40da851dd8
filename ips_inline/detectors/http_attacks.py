"""Payload detectors on complete HTTP requests: sqli, xss, path_traversal,
cmd_injection. They read the request's decoded values (path, parameters,
cookies, free-text headers), computed once per request and shared.

SQLi and XSS use libinjection (tokenizer + fingerprints from the field, far
fewer false positives on prose like "union station" or "O'Brien" than
keyword regexes); XSS adds a few patterns for vectors libinjection's HTML5
tokenizer rates low. Traversal and command injection are small regex sets run
on the folded text.
"""

from __future__ import annotations

import re

import libinjection

from ..http.normalize import fold, url_text
from ..packet.decode import PROTO_TCP, Packet
from ..packet.flows import Flow
from .base import BaseDetector, Signature
from .sqli_layers import stacked_or_split

SIG_SQLI = Signature(1000010, "SQL injection in HTTP request", "Web Application Attack", 1)
SIG_XSS = Signature(1000011, "Cross-site scripting in HTTP request", "Web Application Attack", 1)
SIG_TRAVERSAL = Signature(1000012, "Path traversal in HTTP request", "Web Application Attack", 1)
SIG_CMD = Signature(1000013, "Command injection in HTTP request", "Web Application Attack", 1)

_XSS = re.compile(r"<\s*script|javascript\s*:|<\s*(iframe|svg|object|embed)\b")
_ON_ATTR = re.compile(r"\son[a-z]+\s*=")  # an event handler attribute, inside a tag (below)
_SCHEME = re.compile(r"(java|vb)script:")  # on url_text(): split by tabs/newlines/entities
_TRAVERSAL = re.compile(
    r"(^|[/\\=])\.\.([/\\]|$)"  # ../ or ..\ as a path step
    r"|/etc/(passwd|shadow|hosts|group)\b|\b(boot|win)\.ini\b|/proc/self/")
_COMMANDS = (r"cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[23]?|perl"
             r"|php|ruby|ping|rm|chmod|chown|echo|nslookup|sleep|telnet|busybox|powershell|cmd")
_CMD = re.compile(
    r"(;|\|\|?|&&|`|\$\()\s*(/(usr/)?s?bin/)?(" + _COMMANDS + r")\b")  # ; id  | cat  $(whoami)
_SHELLSHOCK_START = re.compile(r"\(\)\s*\{")  # () { :; };
_SPACES_SEMICOLON = re.compile(r"\s*;")
# A line break ends a command too (host=1.2.3.4%0aid), but prose has line breaks
# before words like "ping" or "cat": only after a first line that is one token.
# (`[^\S\n]*\n`, not `\s*\n`: the latter backtracks over every split of a run of newlines)
_CMD_NEWLINE = re.compile(r"^\S*[^\S\n]*\n\s*(/(usr/)?s?bin/)?(" + _COMMANDS + r")\b")


_TOKEN = re.compile(r"[\w./-]*").fullmatch


# Linear matchers for what a backtracking regex would rescan per start
# (`<[^>]*\son..=`, `\$\([^)]+\)`, `` `[^`]+` ``, `\(\)\s*\{[^}]*\}\s*;` cost
# O(n**2) on a value made of many `<`, `$(`, backticks or `(){`).
def _handler_in_tag(text: str) -> bool:
    """An `on...=` attribute after a `<` with no `>` in between."""
    last_lt = last_gt = -1
    pos = 0
    for match in _ON_ATTR.finditer(text):
        at = match.start()
        last_lt = max(last_lt, text.rfind("<", pos, at))
        last_gt = max(last_gt, text.rfind(">", pos, at))
        pos = at
        if last_lt > last_gt:
            return True
    return False


def _enclosed(text: str, opener: str, closer: str) -> bool:
    """`opener`, one character or more but `closer`, then `closer`."""
    pos = text.find(opener)
    while pos >= 0:
        end = text.find(closer, pos + len(opener))
        if end < 0:
            return False  # no closer after this opener: none after a later one either
        if end > pos + len(opener):
            return True
        pos = text.find(opener, end)  # a closer can open the next one (backticks)
    return False


def _shellshock(text: str) -> bool:
    """`() {` ... the first `}` ... `;`."""
    pos = 0
    while True:
        match = _SHELLSHOCK_START.search(text, pos)
        if match is None:
            return False
        end = text.find("}", match.end())
        if end < 0:
            return False
        if _SPACES_SEMICOLON.match(text, end + 1):
            return True
        pos = end + 1


def _commands(folded: str) -> bool:
    # Each alternative needs one of these; `&` alone (every query has it) does not.
    if ";" not in folded and "|" not in folded and "&&" not in folded and "`" not in folded \
            and "$(" not in folded and "()" not in folded:
        return False
    return bool(_CMD.search(folded) or _enclosed(folded, "`", "`")
                or _enclosed(folded, "$(", ")") or _shellshock(folded))


def _plain(value: str) -> bool:
    """A bare token (letters, digits and . _ / -, no comment opener) cannot
    change a query's structure: skipping libinjection for it (~1.8 us a
    call) halves the cost of a typical request."""
    return bool(_TOKEN(value)) and "--" not in value and "/*" not in value


class _PayloadDetector(BaseDetector):
    protocols = (PROTO_TCP,)
    payload = True
    proof_required = True


class Sqli(_PayloadDetector):
    """libinjection, and a second small linear layer (sqli_layers.py) for what
    it misses: stacked queries, keywords split by inline comments."""

    name = "sqli"

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        assert flow is not None and flow.request is not None  # set by the engine
        for value in flow.request.values:
            if len(value) > 1 and not _plain(value) and (
                    libinjection.is_sql_injection(value)["is_sqli"] or stacked_or_split(value)):
                return SIG_SQLI
        return None


class Xss(_PayloadDetector):
    name = "xss"

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        assert flow is not None and flow.request is not None  # set by the engine
        request = flow.request
        for value, folded in zip(request.values, request.folded, strict=True):
            if not ("<" in value or ":" in value or "&" in value):
                continue  # no markup, no script scheme, no entity: nothing to run
            if _XSS.search(folded) or "<" in folded and _handler_in_tag(folded) \
                    or _SCHEME.search(url_text(value)):
                return SIG_XSS
            # libinjection reads bare text as an HTML attribute context, where
            # `filter=x` or `style=x` count as dangerous: only ask it about markup.
            if "<" in value and libinjection.is_xss(value)["is_xss"]:
                return SIG_XSS
        return None


class PathTraversal(_PayloadDetector):
    name = "path_traversal"

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        assert flow is not None and flow.request is not None  # set by the engine
        for folded in flow.request.folded:
            # Every _TRAVERSAL alternative holds one of these (before / and \ are unified).
            if ((".." in folded or "etc" in folded or ".ini" in folded or "proc" in folded)
                    and _TRAVERSAL.search(folded.replace("\\", "/"))):
                return SIG_TRAVERSAL
        return None


class CmdInjection(_PayloadDetector):
    name = "cmd_injection"

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        assert flow is not None and flow.request is not None  # set by the engine
        request = flow.request
        for value, folded in zip(request.values, request.folded, strict=True):
            if _commands(folded) or "\n" in value and _CMD_NEWLINE.search(
                    fold(value, newlines=True)):
                return SIG_CMD
        return None
