"""What a person sees of a run: console progress, the closing summary and the Ray log capture."""

from raynas.report.console import ConsoleProgress, Progress

__all__ = ["ConsoleProgress", "Progress"]
