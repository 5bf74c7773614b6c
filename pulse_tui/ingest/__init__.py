"""CSV imports: the import kinds (kinds), parsing/validation (parse), the import job runner
(importer). The ``import`` command is ``pulse_tui/cli/import_files.py``."""

from __future__ import annotations

from pulse_tui.ingest.importer import (
    DEFAULT_BATCH_SIZE,
    ImportProgress,
    ImportResult,
    errors_file_name,
    import_file,
    neutralise,
    write_errors_csv,
)
from pulse_tui.ingest.kinds import KINDS
from pulse_tui.ingest.parse import kind_from_path

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "KINDS",
    "ImportProgress",
    "ImportResult",
    "errors_file_name",
    "import_file",
    "kind_from_path",
    "neutralise",
    "write_errors_csv",
]
