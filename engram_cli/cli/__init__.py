"""The `engram` command: one thin module per command (parse flags, call the library, print)."""
