"""The local store (SQLite, WAL): the durable outbox, and the writer that commits outcomes to it."""
