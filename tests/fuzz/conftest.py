"""The fuzzing counts are joined and shown at the end of the report by tests/conftest.py."""
