"""Claims, verdicts and the report pages, read from a finished timeline.
Imports ``common`` only."""
