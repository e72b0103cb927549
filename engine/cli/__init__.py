"""The ``lazarus`` command: it parses and prints, the admin facade decides."""
