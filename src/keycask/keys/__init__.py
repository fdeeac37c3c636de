"""The domain model of keys: metadata, versions, aliases, and their storage."""
