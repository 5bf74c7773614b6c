"""``pulse-tui serve``: the same console in a browser (textual-serve), behind a token."""
