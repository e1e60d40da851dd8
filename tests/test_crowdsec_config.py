"""[crowdsec]: one-line errors, secrets kept out of messages and reprs, files
for credentials, the README, and the hash:net DROP rules beside the ban sets."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from test_enforce_unit import FakeSets, FakeXtables

from ips_inline.config import Config, ConfigError, CrowdsecConfig, LiveConfig, from_dict
from ips_inline.crowdsec import CrowdsecError, net_sets
from ips_inline.crowdsec.link import load_credentials
from ips_inline.enforce.iptables import RuleSet

REPO = Path(__file__).resolve().parent.parent
URL = "http://10.0.0.5:8080"


def cs(**keys: object) -> Config:
    return from_dict({"crowdsec": {"lapi_url": URL, **keys}})


def test_off_by_default_and_on_with_a_url_and_credentials() -> None:
    assert not Config().crowdsec.bouncer and not Config().crowdsec.watcher
    assert net_sets(Config()) is None
    pull = cs(api_key="k")
    assert pull.crowdsec.bouncer and not pull.crowdsec.watcher
    assert net_sets(pull) == ("ips_inline_net4", "ips_inline_net6")
    push = cs(machine_id="host-a", password_file="/etc/ips-inline/lapi.pw")
    assert push.crowdsec.watcher and not push.crowdsec.bouncer and net_sets(push) is None


@pytest.mark.parametrize(("keys", "needle"), [
    ({"lapi_url": ""}, "lapi_url is required"),
    ({"api_key": "k", "lapi_url": "ftp://x"}, "lapi_url must be"),
    ({"api_key": "k", "lapi_url": "http://user:pw@x"}, "lapi_url must be"),
    ({"api_key": "k", "lapi_url": "http://x:99999"}, "lapi_url must be"),
    ({"api_key": "k", "lapi_url": "http://x/?a=b"}, "lapi_url must be"),
    ({}, "needs api_key"),
    ({"machine_id": "m"}, "machine_id needs password"),
    ({"password": "p"}, "machine_id needs password"),
    ({"api_key": "k", "api_key_file": "/f"}, "exclude each other"),
    ({"api_key": "with space"}, "printable ASCII"),
    ({"api_key": "k\r\nX-Evil: 1"}, "printable ASCII"),
    ({"api_key": "k", "poll_interval": 0.01}, "poll_interval"),
    ({"api_key": "k", "timeout": 0}, "timeout"),
    ({"api_key": "k", "retry_max": 0.5}, "retry_max"),
    ({"api_key": "k", "push_queue_max": 10**6}, "push_queue_max"),
    ({"api_key": "k", "max_decisions": 0}, "max_decisions"),
    ({"api_key": "k", "net_set_v4": "ips_inline_ban4"}, "must differ"),
    ({"api_key": "k", "net_set_v4": "bad name!"}, "net_set_v4"),
    ({"api_key": "k", "lapi_key": "x"}, "unknown config key crowdsec.lapi_key"),
    ({"api_key": 5}, "must be str"),
])
def test_bad_settings_name_the_key(keys: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        from_dict({"crowdsec": {"lapi_url": URL, **keys}})
    assert "\n" not in str(info.value)


def test_secrets_stay_out_of_errors_and_reprs() -> None:
    with pytest.raises(ConfigError) as info:
        cs(api_key="s3cr3t value")
    assert "s3cr3t" not in str(info.value)
    cfg = cs(api_key="s3cr3t", machine_id="m", password="hunter2hunter2")
    assert "s3cr3t" not in repr(cfg) and "hunter2" not in repr(cfg)


def test_credentials_from_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, pw = tmp_path / "key", tmp_path / "pw"
    key.write_text("bouncer-key\n")
    key.chmod(0o600)
    pw.write_text("machine-pw")
    pw.chmod(0o644)
    creds = load_credentials(cs(api_key_file=str(key), machine_id="m",
                                password_file=str(pw)).crowdsec)
    assert (creds.api_key, creds.machine_id, creds.password) == ("bouncer-key", "m", "machine-pw")
    assert "readable by others" in caplog.text and "machine-pw" not in caplog.text


def test_password_from_the_credentials_file_cscli_writes(tmp_path: Path) -> None:
    yaml = tmp_path / "lapi.yaml"
    yaml.write_text("url: http://10.0.0.5:8080\nlogin: ips-inline-a\npassword: kNPGCACy9ce\n")
    yaml.chmod(0o600)
    creds = load_credentials(cs(machine_id="ips-inline-a", password_file=str(yaml)).crowdsec)
    assert creds.password == "kNPGCACy9ce"


@pytest.mark.parametrize(("content", "needle"), [
    (None, "No such file"), ("", "one line"), ("two words", "one line"),
    ("x" * 5000, "one line"), ("ünïcode", "one line"),
])
def test_bad_credential_files_are_one_line_errors(tmp_path: Path, content: str | None,
                                                  needle: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CrowdsecError, match=needle) as info:
        load_credentials(cs(api_key_file=str(path)).crowdsec)
    assert "\n" not in str(info.value)


def test_a_missing_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(CrowdsecError, match="ca_file"):
        load_credentials(cs(api_key="k", ca_file=str(tmp_path / "none.pem")).crowdsec)


def test_check_config_cli_reports_crowdsec_errors_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[crowdsec]\nlapi_url = "http://x:8080"\nmachine_id = "m"\n')
    res = subprocess.run([sys.executable, "-m", "ips_inline.cli", "check-config", str(bad)],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "machine_id needs password" in res.stderr


def test_readme_documents_every_crowdsec_key() -> None:
    readme = (REPO / "README.md").read_text()
    for f in fields(CrowdsecConfig):
        assert f"`crowdsec.{f.name}`" in readme, f"crowdsec.{f.name} not in README"
    for needle in ("cscli bouncers add ips-inline", "cscli machines add ips-inline-$(hostname)",
                   "ips_inline_crowdsec_decisions", "ips_inline_crowdsec_pulls_total",
                   "ips_inline_crowdsec_pushes_total", "ips_inline_crowdsec_lapi_up"):
        assert needle in readme, needle


def test_net_set_drop_rules_sit_right_after_the_ban_set_drop() -> None:
    rules = RuleSet(LiveConfig(), net_sets=("ips_inline_net4", "ips_inline_net6"))
    for fam, name in ((4, "ips_inline_net4"), (6, "ips_inline_net6")):
        specs = rules.rule_specs(fam)
        ban = specs.index(["-m", "set", "--match-set", f"ips_inline_ban{fam}", "src", "-j", "DROP"])
        assert specs[ban + 1] == ["-m", "set", "--match-set", name, "src", "-j", "DROP"]
    plain = RuleSet(LiveConfig())
    assert all("ips_inline_net4" not in spec for spec in plain.rule_specs(4))


def test_install_creates_the_net_sets_and_installed_checks_their_rules() -> None:
    xt, sets, nets = FakeXtables(), FakeSets(), FakeSets()
    rules = RuleSet(LiveConfig(), run=xt, sets=sets,  # type: ignore[arg-type]
                    net_sets=("n4", "n6"), nets=nets)  # type: ignore[arg-type]
    rules.install()
    assert sets.log == ["ensure", "close"] and nets.log == ["ensure", "close"]
    assert rules.installed()
    # Rules installed before [crowdsec] was configured: the daemon must refuse to start.
    xt.chains["iptables"]["IPS_INLINE"].remove(["-m", "set", "--match-set", "n4", "src", "-j",
                                                "DROP"])
    assert not rules.installed()
    rules.uninstall(destroy_sets=True)
    assert nets.log[-2:] == ["destroy", "close"]
