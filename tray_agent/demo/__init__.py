"""Reference backend speaking both dialects, with a customer simulator. Independent of the client."""
