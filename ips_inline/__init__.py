"""ips-inline: a lightweight inline intrusion prevention system for Linux."""

from . import compiled as _compiled

__version__ = "0.1.0"

# The mypyc build of the packet path, where one is current and not switched off
# (IPS_INLINE_PURE=1); otherwise the .py modules, which are the source of truth.
_compiled.install()
