"""The front doors: one module per wire protocol that reaches the core."""
