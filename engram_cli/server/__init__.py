"""The gRPC edge of our server: engram.v1 and our extension service, auth, lifecycle.
Thin adapters over engram_cli.engine."""
