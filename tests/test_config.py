from __future__ import annotations

import subprocess
import sys

import pytest

from ips_inline.config import DETECTOR_NAMES, ConfigError, from_dict, load


def test_defaults_need_no_file() -> None:
    cfg = load(None)
    assert sorted(cfg.detectors) == sorted(DETECTOR_NAMES)
    assert cfg.metrics.port == 9100


def test_overlay_keeps_other_defaults() -> None:
    cfg = from_dict({"detectors": {"icmp_flood": {"threshold": 10}}, "engine": {"max_flows": 9}})
    assert cfg.detectors["icmp_flood"].threshold == 10
    assert cfg.detectors["icmp_flood"].window == 1.0
    assert cfg.engine.max_flows == 9 and cfg.engine.max_sources == 65536


@pytest.mark.parametrize(("raw", "needle"), [
    ({"engine": {"nope": 1}}, "engine.nope"),
    ({"nope": {}}, "[nope]"),
    ({"detectors": {"icmp_flod": {}}}, "icmp_flod"),
    ({"engine": {"max_flows": "many"}}, "engine.max_flows"),
    ({"engine": {"max_flows": True}}, "engine.max_flows"),
    ({"engine": {"malformed_policy": "maybe"}}, "malformed_policy"),
    ({"engine": {"whitelist": ["10.0.0.0/33"]}}, "whitelist"),
    ({"detectors": {"sqli": {"mode": "loud"}}}, "detectors.sqli.mode"),
    ({"bans": {"max_duration": 99999999}}, "max_duration"),
    ({"engine": {"max_flows": 0}}, "engine.max_flows"),
    ({"live": {"warm_interval": -0.001}}, "live.warm_interval"),
    ({"live": {"warm_interval": 2}}, "live.warm_interval"),
])
def test_bad_values_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        from_dict(raw)
    assert needle in str(err.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ips_inline.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_check_config_cli(tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[detectors.sqli]\nmode = "alert"\n')
    assert _cli("check-config", str(good)).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nmax_flows = [\n")
    res = _cli("check-config", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _cli("check-config", str(tmp_path / "missing.toml"))
    assert res.returncode == 2 and "cannot read config" in res.stderr


def test_readme_documents_every_key() -> None:
    from dataclasses import fields
    from pathlib import Path

    from ips_inline.config import Config, DetectorConfig

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    cfg = Config()
    for section in ("engine", "bans", "live", "metrics", "eve"):
        for f in fields(getattr(cfg, section)):
            assert f"`{section}.{f.name}" in readme, f"{section}.{f.name} not in README"
    for f in fields(DetectorConfig):
        assert f".{f.name}`" in readme, f"detectors.*.{f.name} not in README"
