"""The handlers of the core operations, one module per family."""
