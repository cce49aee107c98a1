"""Parsers: turn the probe's text into plain Python values. No checking here."""
