"""The one result type every method returns."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

HISTORY_COLUMNS = ("step", "content", "style", "tv", "total")


@dataclass
class StyleResult:
    """A stylised image with its loss history, metrics, parameters and timings."""

    image: Image.Image
    method: str
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False

    def write_history_csv(self, path: str | Path) -> None:
        """Write one row per recorded step (step, content, style, tv, total)."""
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in self.history:
                writer.writerow({key: row.get(key, 0.0) for key in HISTORY_COLUMNS})

    def summary(self) -> str:
        """Human-readable lines: metrics, time and notes."""
        lines = [f"method: {self.method}", f"seconds: {self.seconds:.2f}"]
        for key, value in self.metrics.items():
            lines.append(f"{key}: {value:.6g}")
        if self.cancelled:
            lines.append("cancelled: the image is the last state before the stop")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)
