"""engram-cli: load, query and tune Engram memory servers."""

__version__ = "0.1.0"
