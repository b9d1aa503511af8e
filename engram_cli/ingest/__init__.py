"""From files to memories: readers (JSONL, JSON, CSV/TSV, gzip, stdin), record -> Memory
mapping, the rejects file, checkpoints, and the import job that ties them to the bulk
sender (engram_cli.client.bulk)."""
