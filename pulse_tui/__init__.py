"""PULSE TUI: the terminal console for the PULSE analytics store."""

__version__ = "0.1.0"
