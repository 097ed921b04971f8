"""Progress: a bar (done / failed / remaining, rate, ETA) on a terminal, plain lines in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from qidicom.batch.cases import CaseResult


class Progress:
    """Told of each finished case; draws with tqdm on a TTY, else prints a line now and then."""

    def __init__(
        self, total: int, *, enabled: bool = True, stream: TextIO | None = None, every: float = 10.0, each: bool = False
    ):
        self.total = total
        self.each = each  # a line for every case, not only the failed ones
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.started = time.monotonic()
        self.every = every
        self._last_line = 0.0
        self._bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, unit="case", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def note(self, text: str) -> None:
        """A message (the scheduler, the dashboard link) that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def update(self, result: CaseResult) -> None:
        key = "failed" if result.status in ("failed", "timeout") else result.status
        self.counts[key] = self.counts.get(key, 0) + 1
        if not self.enabled:
            return
        if key == "failed":
            self.note(f"{result.status}: {result.case}: {result.error}")
        elif self.each:
            self.note(f"{result.status}: {result.case} ({result.seconds:.2f} s) {result.output}")
        if self._bar is not None:
            self._bar.set_postfix_str(f"ok {self.counts['ok']}, skipped {self.counts['skipped']}, failed {self.counts['failed']}", refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if self.done == self.total or now - self._last_line >= self.every:
            self._last_line = now
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        remaining = self.total - self.done
        rate = self.done / elapsed * 60 if elapsed > 0 else 0.0
        eta = f", ETA {time.strftime('%H:%M:%S', time.localtime(time.time() + remaining / rate * 60))}" if rate and remaining else ""
        return (
            f"batch: {self.done}/{self.total} done ({self.counts['ok']} ok, {self.counts['skipped']} skipped, "
            f"{self.counts['failed']} failed), {remaining} remaining, {rate:.1f} cases/min{eta}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
