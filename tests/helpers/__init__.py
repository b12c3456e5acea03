"""Helpers the test modules share (fixtures are in tests/conftest.py): the project copy, real servers, tiny data, tiny models."""
