"""What a person sees of a run: console progress, the Ray log capture, the closing summary, and
``report.html`` (inline-SVG charts, the best architecture traced as a graph)."""

from raynas.report.console import ConsoleProgress, Progress

__all__ = ["ConsoleProgress", "Progress"]
