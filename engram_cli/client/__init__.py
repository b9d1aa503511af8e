"""Talking to an Engram server: channels, error translation, autostart, bulk sending,
the recall cache."""
