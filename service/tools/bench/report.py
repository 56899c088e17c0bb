"""Figures of a bench run: one `Row` per thing measured, a table for people, JSON for machines."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


def percentile(samples: list[float], q: float) -> float | None:
    """The `q` quantile (0..1) of `samples` by the nearest-rank method; None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass(slots=True)
class Row:
    """One measured workload. Times in seconds; None where a figure does not apply."""

    name: str
    events: int = 0
    seconds: float = 0.0
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    errors: int = 0
    peak_lag: int | None = None
    rss_mb: float | None = None
    cpu_relbank: float | None = None  # cores used on average during the run
    cpu_postgres: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    ratios: list[tuple[str, float | None, str]] = field(default_factory=list)
    command: str = ""

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def find(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def ratio(self, label: str, top: str, bottom: str, target: str = "") -> None:
        a, b = self.find(top), self.find(bottom)
        value = a.rate / b.rate if a and b and b.rate else None
        self.ratios.append((label, value, target))

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "cores": os.cpu_count(),
            "rows": [asdict(r) | {"rate": r.rate} for r in self.rows],
            "ratios": [{"name": n, "value": v, "target": t} for n, v, t in self.ratios],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")

    def print(self, out: TextIO | None = None) -> None:
        out = out or sys.stdout
        print(table(self.rows), file=out)
        if self.ratios:
            print("", file=out)
            width = max(len(n) for n, _, _ in self.ratios)
            for name, value, target in self.ratios:
                shown = "n/a" if value is None else f"{value:.2f}"
                print(f"{name:<{width}}  {shown:>6}  {target}", file=out)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f}"


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


COLUMNS = (
    "workload",
    "events",
    "events/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "peak lag",
    "RSS MB",
    "CPU relbank",
    "CPU postgres",
)


def table(rows: list[Row]) -> str:
    """A plain-text table, one line per row (CPU in cores: 1.0 is one core busy)."""
    cells = [
        [
            r.name,
            str(r.events),
            f"{r.rate:,.0f}" if r.events else "",
            _ms(r.p50),
            _ms(r.p99),
            _ms(r.p999),
            str(r.errors),
            _num(r.peak_lag, "d"),
            _num(r.rss_mb, ".0f"),
            _num(r.cpu_relbank, ".2f"),
            _num(r.cpu_postgres, ".2f"),
        ]
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [list(COLUMNS), *cells]) for i in range(len(COLUMNS))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for c, r in zip(cells, rows, strict=True):
        line = "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(c, widths, strict=True))
        )
        lines.append(line + (f"  {r.note}" if r.note else ""))
    return "\n".join(lines)


def progress(total: int, desc: str, unit: str = "ev") -> tqdm[Any]:
    """A progress bar on standard error (silent when that is not a terminal)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=None)
