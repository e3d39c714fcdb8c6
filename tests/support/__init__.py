"""Helpers the tests share (reading a topic to its end, the schema files at the repository root)."""
