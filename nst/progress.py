"""Progress reports and cooperative cancellation shared by every method and trainer."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from PIL import Image

from nst.errors import Cancelled


@dataclass
class Progress:
    """One progress report: where a run is, its current loss terms and an optional preview."""

    step: int
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    preview: Optional[Image.Image] = None

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 1.0


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Thread-safe flag a UI thread sets to stop a run at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("The run was cancelled.")
