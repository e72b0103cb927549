"""Staged publishes: rows written in a transaction, published with confirms by the relay."""
