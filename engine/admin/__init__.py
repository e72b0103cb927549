"""One facade for every operation a person or script performs on jobs, dead letters,
queues and types; the CLI, the HTTP API and the dashboard all call it."""
