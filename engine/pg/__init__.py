"""The store wing: the PostgreSQL store, its named queries and migrations (``sql/``),
the workers' registry, and the store port the rest of the engine is written against
(``port``: the Protocols per consumer group; ``rows``: Row; ``errors``: how database
errors are classified).

The only package that runs SQL."""
