"""The rules engine's error types."""

from __future__ import annotations

from ..errors import UserError


class RuleFileError(UserError):
    """A rule file that cannot be used: "file:line: message" (or "file: ..."
    when it cannot be read). On reload the caller keeps its old rules."""


class Invalid(ValueError):
    """A rule that is wrong as Suricata would read it: the file is rejected."""


class Unsupported(ValueError):
    """Valid Suricata, but beyond the subset supported here: the rule is skipped."""
