"""Captures: the JSONL format (format.py), writing it (writer.py) and reading it (reader.py)."""
