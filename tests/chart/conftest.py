"""Chart test fixtures; the helpers live in chart_support.py so test modules can import them by a unique name."""

from chart_support import helm, render, render_error, validators

__all__ = ["helm", "render", "render_error", "validators"]
