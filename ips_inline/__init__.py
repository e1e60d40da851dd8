"""ips-inline: a lightweight inline intrusion prevention system for Linux."""

__version__ = "0.1.0"
