"""Decisions to kernel sets and the state file: scopes, timeouts, overlapping
decisions, deletions, the whitelist, local bans, a full set, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ips_inline.config import IPSET_MAX_TIMEOUT
from ips_inline.crowdsec import state
from ips_inline.crowdsec.bouncer import Bouncer
from ips_inline.crowdsec.decisions import parse_stream
from ips_inline.enforce.addr import parse_ip, parse_network
from ips_inline.enforce.ipset import EnforceError, SetFull
from ips_inline.enforce.store import BanStore

NOW = 1_800_000_000.0


class FakeSet:
    """IpsetEnforcer's add/delete/entries over a dict, with a maxelem."""

    def __init__(self, nets: bool = False, maxelem: int = 100) -> None:
        self.nets, self.maxelem = nets, maxelem
        self.entries_: dict[str, int] = {}
        self.fail: Exception | None = None

    def add(self, value: str, timeout: int) -> None:
        value = parse_network(value) if self.nets else parse_ip(value)
        if self.fail is not None:
            raise self.fail
        if value not in self.entries_ and len(self.entries_) >= self.maxelem:
            raise SetFull("full")
        assert 1 <= timeout <= IPSET_MAX_TIMEOUT
        self.entries_[value] = timeout

    def delete(self, value: str) -> bool:
        return self.entries_.pop(value, None) is not None

    def entries(self) -> dict[str, int]:
        return dict(self.entries_)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def dec(ident: int, value: str, duration: str = "3h59m58s", scope: str = "Ip",
        origin: str = "cscli", kind: str = "ban") -> dict:
    return {"id": ident, "origin": origin, "scenario": f"manual 'ban' from '{origin}'",
            "scope": scope, "type": kind, "value": value, "duration": duration}


class World:
    def __init__(self, tmp: Path, whitelist=("127.0.0.0/8", "::1/128", "192.0.2.128/25"),
                 max_decisions: int = 1000, own=lambda _i: False) -> None:
        self.store = BanStore(str(tmp / "state.json"))
        self.ips, self.nets = FakeSet(), FakeSet(nets=True)
        self.clock = Clock()
        self.bouncer = Bouncer(self.store, self.ips, self.nets, whitelist, max_decisions,
                               own=own, clock=self.clock)

    def pull(self, new=(), deleted=(), startup: bool = False) -> tuple[int, int]:
        return self.bouncer.apply(parse_stream({"new": list(new), "deleted": list(deleted)}, 1000),
                                  startup)

    def ranges(self) -> dict:
        return state.ranges(self.store.load_section(state.SECTION))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_ip_and_range_with_their_remaining_time(world: World) -> None:
    assert world.pull([dec(1, "203.0.113.7", "3h59m58s"),
                       dec(2, "198.51.100.0/24", "1.5s", scope="Range"),
                       dec(3, "2001:db8:1::/48", "1h59m59.659857347s", scope="Range"),
                       dec(4, "2001:db8::9", "10m")], startup=True) == (4, 0)
    assert world.ips.entries_ == {"203.0.113.7": 14398, "2001:db8::9": 600}
    assert world.nets.entries_ == {"198.51.100.0/24": 2, "2001:db8:1::/48": 7200}
    entry = world.store.load()["203.0.113.7"]
    assert entry == {"expires": NOW + 14398, "detector": "manual 'ban' from 'cscli'", "count": 1,
                     "origin": "crowdsec:cscli"}
    assert world.ranges()["198.51.100.0/24"]["origin"] == "crowdsec:cscli"
    assert world.bouncer.gauge() == {("cscli", "Ip"): 2, ("cscli", "Range"): 2}


def test_timeouts_are_clamped_to_ipsets_limit(world: World) -> None:
    world.pull([dec(1, "203.0.113.7", "2000000h"), dec(2, "203.0.113.8", "1ms")])
    assert world.ips.entries_ == {"203.0.113.7": IPSET_MAX_TIMEOUT, "203.0.113.8": 1}
    # The state file says what the kernel holds: the periodic full pull renews it.
    assert world.store.load()["203.0.113.7"]["expires"] == NOW + IPSET_MAX_TIMEOUT


def test_expired_and_deleted_decisions_are_removed(world: World) -> None:
    world.pull([dec(1, "203.0.113.7"), dec(2, "198.51.100.0/24", scope="Range")])
    assert world.pull(deleted=[dec(1, "203.0.113.7", "-17ms"),
                               dec(2, "198.51.100.0/24", "-1s", scope="Range")]) == (0, 2)
    assert world.ips.entries_ == {} and world.nets.entries_ == {}
    assert world.store.load()["203.0.113.7"]["expires"] == 0  # history stays for escalation
    assert world.ranges() == {}
    assert world.bouncer.gauge() == {}
    world.pull([dec(3, "203.0.113.9", "-5s")])  # already expired in `new`: nothing
    assert world.ips.entries_ == {}


def test_two_decisions_on_one_value_last_as_long_as_the_longest(world: World) -> None:
    world.pull([dec(1, "203.0.113.7", "1h"), dec(2, "203.0.113.7", "4h", origin="crowdsec")])
    assert world.ips.entries_["203.0.113.7"] == 4 * 3600
    world.pull(deleted=[{"id": 2}])
    assert world.ips.entries_["203.0.113.7"] == 3600  # the other one still holds
    world.pull(deleted=[{"id": 1}])
    assert "203.0.113.7" not in world.ips.entries_


@pytest.mark.parametrize(("value", "scope"), [
    ("127.0.0.1", "Ip"), ("::1", "Ip"), ("192.0.2.200", "Ip"),
    ("192.0.2.0/24", "Range"),      # contains a whitelisted CIDR
    ("192.0.2.192/26", "Range"),    # inside one
    ("10.0.0.0/1", "Range"), ("::/1", "Range"),
])
def test_whitelisted_is_never_applied_and_logged_once(world: World, value: str, scope: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    world.pull([dec(1, value, scope=scope)])
    world.pull([dec(1, value, scope=scope)], startup=True)
    assert world.ips.entries_ == {} and world.nets.entries_ == {}
    assert world.bouncer.rejected["whitelisted"] == 2
    assert len([r for r in caplog.records if "not applied" in r.message]) == 1


def test_the_lapi_server_is_never_banned(world: World) -> None:
    world.bouncer.protected = [parse_net("198.51.100.10/32")]
    world.pull([dec(1, "198.51.100.10"), dec(2, "198.51.100.0/24", scope="Range")])
    assert world.ips.entries_ == {} and world.nets.entries_ == {}
    assert world.bouncer.rejected["whitelisted"] == 2


def parse_net(text: str):
    import ipaddress

    return ipaddress.ip_network(text)


def test_a_longer_local_ban_wins(world: World) -> None:
    world.store.record_ban("203.0.113.7", NOW + 86400, "sqli", 2)
    world.ips.entries_["203.0.113.7"] = 86400
    world.pull([dec(1, "203.0.113.7", "1h")])
    assert world.ips.entries_["203.0.113.7"] == 86400  # not shortened
    assert world.store.load()["203.0.113.7"]["detector"] == "sqli"
    world.pull(deleted=[{"id": 1}])
    assert world.ips.entries_["203.0.113.7"] == 86400  # not removed either


def test_a_longer_decision_takes_over_a_short_local_ban(world: World) -> None:
    world.store.record_ban("203.0.113.7", NOW + 60, "sqli", 2)
    world.pull([dec(1, "203.0.113.7", "1h")])
    assert world.ips.entries_["203.0.113.7"] == 3600
    entry = world.store.load()["203.0.113.7"]
    assert entry["origin"] == "crowdsec:cscli" and entry["count"] == 2


def test_own_decisions_are_not_applied_again(tmp_path: Path) -> None:
    world = World(tmp_path, own=lambda ident: ident == 5)
    world.pull([dec(5, "203.0.113.7", origin="ips-inline"), dec(6, "203.0.113.8",
                                                                origin="ips-inline")])
    assert list(world.ips.entries_) == ["203.0.113.8"]


def test_startup_list_replaces_what_was_applied_before(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.pull([dec(1, "203.0.113.7"), dec(2, "198.51.100.0/24", scope="Range"),
                dec(3, "203.0.113.8")])
    # A restart: a new bouncer over the same state file and sets; LAPI lost id 1 and 2.
    again = Bouncer(world.store, world.ips, world.nets, [], 1000, clock=world.clock)
    again.apply(parse_stream({"new": [dec(3, "203.0.113.8")], "deleted": None}, 1000), True)
    assert list(world.ips.entries_) == ["203.0.113.8"] and world.nets.entries_ == {}
    assert world.ranges() == {}


def test_ranges_come_back_from_the_state_file_while_lapi_is_down(world: World) -> None:
    world.pull([dec(2, "198.51.100.0/24", "1h", scope="Range")])
    world.nets.entries_.clear()  # a reboot emptied the kernel sets
    world.clock.now += 600
    world.bouncer.restore()
    assert world.nets.entries_ == {"198.51.100.0/24": 3000}


def test_too_many_decisions_are_counted(tmp_path: Path) -> None:
    world = World(tmp_path, max_decisions=3)
    world.pull([dec(i, f"203.0.113.{i}") for i in range(1, 6)])
    assert len(world.ips.entries_) == 3 and world.bouncer.rejected["too_many"] == 2


def test_a_full_set_is_counted_not_lost_silently(world: World,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    world.ips.maxelem = 2
    world.pull([dec(i, f"203.0.113.{i}") for i in range(1, 5)])
    assert len(world.ips.entries_) == 2 and world.bouncer.rejected["set_full"] == 2
    assert "ipset full" in caplog.text
    assert sorted(world.store.load()) == sorted(world.ips.entries_)  # only what was applied
    world.ips.fail = EnforceError("netlink down")
    world.pull([dec(9, "203.0.113.9")])
    assert world.bouncer.rejected["netlink"] == 1


def test_only_bans_and_known_scopes(world: World) -> None:
    world.pull([dec(1, "203.0.113.7", kind="captcha"), dec(2, "FR", scope="Country"),
                dec(3, "203.0.113.8", duration="soon")])
    assert world.ips.entries_ == {}
    assert {k: v for k, v in world.bouncer.rejected.items() if v} == {
        "not_ban": 1, "scope": 1, "invalid": 1}


def test_origin_labels_are_bounded(world: World) -> None:
    world.pull([dec(i, f"203.0.113.{i}", origin=f"o{i}") for i in range(1, 31)])
    labels = {origin for origin, _scope in world.bouncer.gauge()}
    assert len(labels) == 17 and "other" in labels


def test_pulled_bans_stay_out_of_the_engines_ban_manager(tmp_path: Path) -> None:
    """A big blocklist must not evict local offence history (bans.max_tracked)
    nor come back as "unban" records: the kernel enforces pulled bans."""
    from ips_inline.config import from_dict
    from ips_inline.daemon import Daemon, raw_ip

    cfg = from_dict({"live": {"state_path": str(tmp_path / "state.json"),
                              "eve_path": str(tmp_path / "eve.json")}})
    daemon = Daemon(cfg, None)
    daemon.store.record_ban("192.0.2.1", NOW + 600, "sqli", 1)
    daemon.store.update(lambda bans: bans.update({"192.0.2.2": {
        "expires": NOW + 600, "detector": "x", "count": 1, "origin": "crowdsec:CAPI"}}))
    kernel = FakeSet()
    kernel.entries_ = {"192.0.2.1": 600, "192.0.2.2": 600}
    daemon.restore(kernel)  # type: ignore[arg-type]
    assert set(daemon.bans.active) == {raw_ip("192.0.2.1")}
    daemon.store.update(lambda bans: bans.update({"192.0.2.3": {
        "expires": 2e9, "detector": "x", "count": 1, "origin": "crowdsec:cscli"}}))
    daemon._store_mtime = 0.0
    daemon._housekeeping(NOW)
    assert set(daemon.bans.active) == {raw_ip("192.0.2.1")}
    daemon.eve.close()
