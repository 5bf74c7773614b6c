"""The data interfaces between the panes, the CLI, the worker and the stores."""
