"""One progress display for every long step of the CLI (training, export, benchmarks,
downloads).

On a terminal it is a rich live display, one line per task laid out to the terminal's
width: the count, the elapsed time and the time left are never cut; the description and
the extra ``info`` text are shortened with an ellipsis and the bar takes what is left.
When the output is not a terminal (a file, a pipe, CI) it writes plain lines instead:
one when a step starts and one at most every ``interval`` seconds while it runs, never
wrapped and without control characters.

Library code reports through a ``progress(description, done, total)`` callback
(:meth:`Progress.callback`), so it needs neither rich nor a terminal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from rich.console import Console
from rich.filesize import decimal
from rich.progress import Progress as _RichProgress
from rich.progress import ProgressColumn, Task
from rich.text import Text

__all__ = ["Progress", "ProgressTask", "progress_console"]

_COUNTER = re.compile(r"\s*\(\d+/\d+\)$")  # "distilling (12/400)": the same step
_BAR_MAX = 40
_BAR_MIN = 10


def progress_console() -> Console:
    """The console progress goes to: stderr, so stdout stays clean for ``--json``."""
    return Console(stderr=True)


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _count(done: float, total: float | None, unit: str) -> str:
    if unit == "bytes":
        return decimal(int(done)) + ("" if total is None else f"/{decimal(int(total))}")
    return f"{int(done)}" + ("" if total is None else f"/{int(total)}")


def _fields(task: Task) -> tuple[str, str, str]:
    """(count, times, info) of a task as plain text."""
    unit = task.fields.get("unit", "")
    count = _count(task.completed, task.total, unit)
    times = _clock(task.elapsed)
    if task.total is not None and not task.finished:
        times += f" eta {_clock(task.time_remaining)}"
    return count, times, str(task.fields.get("info") or "")


class _LineColumn(ProgressColumn):
    """The whole task as one line that fits ``console.width`` (rich's own columns cut
    fields at random once a terminal is narrower than their sum)."""

    max_refresh = 0.25

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def render(self, task: Task) -> Text:
        width = max(self.console.width - 1, 20)  # the last cell would wrap on some terminals
        count, times, info = _fields(task)
        fixed = f" {count} {times}"
        bar_room = _BAR_MIN + 1 if task.total is not None else 0
        desc = Text(task.description, style="bold")
        most = width - len(fixed) - bar_room  # the description's room without info
        desc.truncate(max(min(most, width // 3) if info else most, 12), overflow="ellipsis")
        room = width - desc.cell_len - len(fixed)
        bar_width = 0
        if task.total is not None and room - 1 >= _BAR_MIN:
            # the bar gives way to the info text down to its minimum
            wanted = room - 1 - (len(info) + 1 if info else 0)
            bar_width = min(_BAR_MAX, max(_BAR_MIN, wanted))
        room -= bar_width + (1 if bar_width else 0)
        line = desc
        if bar_width:
            done = 0 if not task.total else min(task.completed / task.total, 1.0)
            filled = int(round(done * bar_width))
            line.append(" ")
            line.append("━" * filled, style="bar.complete")
            line.append("━" * (bar_width - filled), style="bar.back")
        line.append(fixed, style="progress.elapsed")
        if info and room > 4:
            extra = Text(" " + info, style="dim")
            extra.truncate(room, overflow="ellipsis")
            line.append_text(extra)
        line.no_wrap = True
        line.overflow = "ellipsis"
        return line


class ProgressTask:
    """One line of progress: ``update(done=, total=, description=, info=)``."""

    def __init__(self, owner: Progress, task_id, description: str, total, unit: str) -> None:
        self._owner, self._id = owner, task_id
        self.description, self.total, self.done, self.unit = description, total, 0, unit
        self.info = ""
        self._started = time.monotonic()
        self._last_line = -1e9
        self._stem: str | None = None

    def update(
        self,
        *,
        done: float | None = None,
        total: float | None = None,
        description: str | None = None,
        info: str | None = None,
        advance: float = 0,
    ) -> None:
        if description is not None:
            self.description = description
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if done is not None:
            self.done = done
        self.done += advance
        self._owner._update(self)

    def reset(self, description: str | None = None, total: float | None = None) -> None:
        """Start the line over (a new epoch): count and clock from zero."""
        self._started = time.monotonic()
        self.done = 0
        if description is not None:
            self.description = description
        if total is not None:
            self.total = total
        self._owner._reset(self)

    def plain_line(self) -> str:
        count = _count(self.done, self.total, self.unit)
        line = f"{self.description}: {count}, {_clock(time.monotonic() - self._started)}"
        return line + (f", {self.info}" if self.info else "")


class Progress:
    """Progress lines on stderr, as a context manager.

    ``enabled=False`` shows nothing (``--quiet``, other DDP ranks); ``transient`` clears
    the live display at the end (``--json``); ``plain`` forces the non-terminal form
    (default: whenever stderr is not a terminal).
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        transient: bool = False,
        console: Console | None = None,
        plain: bool | None = None,
        interval: float = 15.0,
    ) -> None:
        self.enabled = enabled
        self.console = console or progress_console()
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.interval = interval
        self._rich: _RichProgress | None = None
        if enabled and not self.plain:
            self._rich = _RichProgress(
                _LineColumn(self.console),
                console=self.console,
                transient=transient,
                refresh_per_second=4,  # two shared cores: the display costs little
            )
        self._tasks: list[ProgressTask] = []

    # ---------------------------------------------------------------- life cycle

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self._rich is not None:
            self._rich.start()

    def stop(self) -> None:
        if self._rich is not None:
            self._rich.stop()

    # ---------------------------------------------------------------- tasks

    def add_task(
        self, description: str, total: float | None = None, *, unit: str = "", info: str = ""
    ) -> ProgressTask:
        task_id = None
        if self._rich is not None:
            task_id = self._rich.add_task(description, total=total, info=info, unit=unit)
        task = ProgressTask(self, task_id, description, total, unit)
        task.info = info
        self._tasks.append(task)
        return task  # a plain line waits for the first update: it says more

    def callback(
        self, description: str = "working", total: float | None = None
    ) -> Callable[[str, float, float | None], None]:
        """A ``progress(description, done, total)`` function driving one new line."""
        task = self.add_task(description, total)

        def progress(description: str, done: float, total: float | None) -> None:
            task.update(description=description, done=done, total=total)

        return progress

    def print(self, line: str) -> None:
        """A line above the live display (wrapped at words on a terminal), or a plain
        line (never wrapped)."""
        if not self.enabled:
            return
        if self._rich is not None:
            self.console.print(line, highlight=False, markup=False)
        else:
            self._plain(line)

    # ---------------------------------------------------------------- internals

    def _update(self, task: ProgressTask) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(
                task._id,
                description=task.description,
                completed=task.done,
                total=task.total,
                info=task.info,
            )
            return
        now = time.monotonic()
        stem = _COUNTER.sub("", task.description)
        if stem != task._stem or now - task._last_line >= self.interval:
            task._stem, task._last_line = stem, now
            self._plain(task.plain_line())

    def _reset(self, task: ProgressTask) -> None:
        if self._rich is not None and self.enabled:
            self._rich.reset(task._id, total=task.total, description=task.description)
        task._stem = None  # the next update writes a plain line

    def _plain(self, line: str) -> None:
        self.console.file.write(line + "\n")
        self.console.file.flush()
