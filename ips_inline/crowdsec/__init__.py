"""CrowdSec's Local API (LAPI), both ways: a bouncer pulling its decisions into
the kernel sets, a watcher pushing the daemon's bans to it as alerts.

    duration.py   Go duration strings ("1h59m59.6s", "-17ms")
    decisions.py  the decision stream, validated field by field
    client.py     the HTTP client (requests), bounded in time and size
    bouncer.py    decisions -> ipsets (hash:ip for Ip, hash:net for Range) + state file
    watcher.py    the push queue -> alerts with one decision each
    evidence.py   the engine's EVE records -> queued pushes
    state.py      the "crowdsec" section of the state file (queue, pushed ids, ranges)
    agent.py      the one thread talking to LAPI, with back-off
    link.py       what the daemon, the supervisor and the CLI call
"""

from .link import CrowdsecError, Link, net_sets, queue_manual_ban, queue_unban

__all__ = ["CrowdsecError", "Link", "net_sets", "queue_manual_ban", "queue_unban"]
