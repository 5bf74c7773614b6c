"""Run the CLI with ``python -m pulse_tui``."""

from pulse_tui.cli import main

main()
