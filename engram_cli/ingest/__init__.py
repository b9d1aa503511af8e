"""From files to memories: readers (JSONL, CSV/TSV, stdin), record -> Memory mapping."""
