"""Chart test fixtures. The helpers live in chart_support.py: test modules import them by that unique name."""

from chart_support import helm, render, render_error, validators

__all__ = ["helm", "render", "render_error", "validators"]


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "slow_build: builds the wheel and installs it with its dependencies into a fresh venv "
        "(20-60 s, needs the package index); deselect with -m 'not slow_build'")
