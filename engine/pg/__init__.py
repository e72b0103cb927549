"""The store wing: the PostgreSQL store, its named queries and migrations (``sql/``),
the workers' registry.

The only package that runs SQL."""
