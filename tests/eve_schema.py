"""Checking EVE records against Suricata's schema (7.0.17, etc/schema.json of
the Suricata project, GPL-2.0, in ../shared) and the Community ID library.
Not a test module.

What is valid, as the README's EVE section says:
- `alert` records: against Suricata's schema as it is (it closes the top
  level and the alert object: no unknown key passes). Besides, every
  alert.metadata value must be a non-empty list of strings (Suricata's
  convention; its schema leaves ips-inline's keys untyped).
- every other record (`ban`, `unban`, `alert_suppressed`, the replay's
  `stats`): Suricata's schema knows no such top-level object (or, for stats,
  other counters) and allows no unknown top-level key, so no record carrying
  one can be valid against it. Such a record is valid when the record without
  its own object is valid against Suricata's schema, and the object against
  IPS_OBJECTS below.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import communityid
import pytest
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / \
    "suricata-eve-schema-7.0.17.json"

_COUNT = {"type": "integer", "minimum": 0}
IPS_OBJECTS: dict[str, dict[str, Any]] = {
    "ban": {
        "type": "object", "additionalProperties": False,
        "required": ["detector", "duration", "count", "origin"],
        "properties": {"detector": {"type": "string"}, "duration": {"type": "integer",
                                                                    "minimum": 1},
                       "count": {"type": "integer", "minimum": 1},
                       "origin": {"type": "string"}},
    },
    "unban": {
        "type": "object", "additionalProperties": False, "required": ["reason"],
        "properties": {"reason": {"type": "string"}},
    },
    "alert_suppressed": {
        "type": "object", "additionalProperties": False, "required": ["count"],
        "properties": {"count": {"type": "integer", "minimum": 1}},
    },
    "stats": {  # the replay's summary
        "type": "object",
        "required": ["packets", "accepted", "dropped", "malformed", "alerts", "bans"],
        "properties": {"packets": _COUNT, "accepted": _COUNT, "dropped": _COUNT,
                       "malformed": _COUNT, "non_ip": _COUNT, "exceptions": _COUNT,
                       "truncated": _COUNT,
                       "defrag": {"type": "object", "additionalProperties": _COUNT},
                       "alerts": {"type": "object", "additionalProperties": _COUNT},
                       "bans": {"type": "array", "items": {"type": "string"}},
                       "metrics": {"type": "object"}},
    },
}
_PROTOS = {"TCP": communityid.PROTO_TCP, "UDP": communityid.PROTO_UDP,
           "ICMP": communityid.PROTO_ICMP, "IPv6-ICMP": communityid.PROTO_ICMP6}


@cache
def suricata() -> Draft202012Validator:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"{SCHEMA_PATH} missing (the shared folder beside the repository)")
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, instance: Any, where: str) -> list[str]:
    return [f"{where}{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
            for e in validator.iter_errors(instance)]


def schema_errors(record: dict[str, Any]) -> list[str]:
    """Why `record` is not valid as the module docstring defines it ([] if it is)."""
    kind = record.get("event_type")
    if kind == "alert":
        errors = _errors(suricata(), record, "")
        meta = record.get("alert", {}).get("metadata", {})
        errors += [f"alert.metadata.{k} is not a list of strings: {v!r}" for k, v in meta.items()
                   if not (isinstance(v, list) and v and all(isinstance(s, str) for s in v))]
        return errors
    if kind not in IPS_OBJECTS:
        return [f"unknown event_type {kind!r}"]
    if kind not in record:
        return [f"{kind} record without its {kind!r} object"]
    rest = {k: v for k, v in record.items() if k != kind}
    return (_errors(suricata(), rest, "") +
            _errors(Draft202012Validator(IPS_OBJECTS[kind]), record[kind], f"{kind}."))


def expected_community_id(record: dict[str, Any]) -> str:
    """What the communityid library computes for the record's 5-tuple."""
    proto = _PROTOS[record["proto"]]
    if proto in (communityid.PROTO_ICMP, communityid.PROTO_ICMP6):
        ports = (record["icmp_type"], record["icmp_code"])
    else:
        ports = (record["src_port"], record["dest_port"])
    tpl = communityid.FlowTuple(proto, record["src_ip"], record["dest_ip"], *ports)
    return communityid.CommunityID(seed=0).calc(tpl)


def record_errors(record: dict[str, Any]) -> list[str]:
    """Schema errors, plus: a community_id equal to the library's, and HTTP
    alerts naming their URL and host."""
    errors = schema_errors(record)
    if "community_id" in record and record["community_id"] != expected_community_id(record):
        errors.append(f"community_id {record['community_id']} != the library's "
                      f"{expected_community_id(record)}")
    if record.get("app_proto") == "http" and not {"url", "hostname"} <= set(record["http"]):
        errors.append(f"HTTP alert without http.url and http.hostname: {record['http']}")
    return errors


def check_records(records: list[dict[str, Any]]) -> list[str]:
    """Every problem of every record, each line naming the record."""
    out = []
    for n, record in enumerate(records, 1):
        out += [f"record {n} ({record.get('event_type')}): {e}" for e in record_errors(record)]
    return out
