"""The table `make bench` prints: machine on top, one section per measurement."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata

from benchlab import REPO

WIDTHS = (46, 16, 8, 12)  # label, value, ratio, target; the note takes the rest


@dataclass
class Row:
    label: str
    value: str
    ratio: str = ""
    target: str = ""
    note: str = ""


@dataclass
class Report:
    header: list[str]
    sections: list[tuple[str, list[Row]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.sections.append((title, []))

    def add(self, row: Row) -> None:
        self.sections[-1][1].append(row)

    def na(self, label: str, reason: str) -> None:
        self.add(Row(label, f"n/a ({reason})"))

    def render(self) -> str:
        lines = [*self.header, ""]
        cols = ("measurement", "value", "ratio", "target", "note")
        lines.append(_line(Row(*cols)))
        for title, rows in self.sections:
            lines.append(f"-- {title} " + "-" * max(0, 78 - len(title)))
            lines += [_line(r) for r in rows]
        lines += [f"* {n}" for n in self.notes]
        return "\n".join(lines)


def _line(r: Row) -> str:
    if r.value.startswith("n/a"):
        text = r.value if len(r.value) <= 90 else r.value[:86] + "...)"
        return f"{r.label:<{WIDTHS[0]}} {text}"
    a, b, c, d = WIDTHS
    return f"{r.label:<{a}} {r.value:>{b}} {r.ratio:>{c}} {r.target:>{d}}  {r.note}".rstrip()


def target(value: float, wanted: float, op: str = ">=") -> str:
    """The issue's target for a figure, and whether this run met it."""
    met = {">=": value >= wanted, "<=": value <= wanted, "=": value == wanted}[op]
    return f"{op}{wanted:g} {'ok' if met else 'MISS'}"


def machine() -> list[str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = _git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--", "ips_inline") else ""
    return [f"machine: {cpu}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
            f"Python {platform.python_version()}, NetfilterQueue {_version('NetfilterQueue')}",
            f"ips-inline {_version('ips-inline')} at {rev or '?'}{dirty}"]


def _git(*args: str) -> str:
    cp = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                        check=False)
    return cp.stdout.strip()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def kpps(x: float) -> str:
    return f"{x:.1f} kpps"


def gbps(bps: float) -> str:
    return f"{bps / 1e9:.2f} Gbit/s"


def us(x: float) -> str:
    return f"{x:.0f} us"
