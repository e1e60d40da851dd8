"""The one error type the CLI prints as a single line (exit status 2): every
module's user-facing error derives from it or is converted to it."""


class UserError(Exception):
    """Something the user can fix: bad input, missing permission, wrong state."""


class DaemonError(UserError):
    """A reason the daemon cannot start or go on."""
