"""Metrics and figures of the report step."""
