"""The memory store: durable rows, full-text and vector seeds, spreading activation,
forgetting, consolidation. Knows nothing of gRPC or the CLI."""
