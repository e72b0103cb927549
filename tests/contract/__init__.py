"""Contract tests: one set of rules, run against the real service and its in-memory double."""
