"""The HTTP edge: the only layer that knows AWS wire names, JSON and status codes.

Requests arrive as bytes and leave this package as validated Python values with
snake_case names; results come back up as objects and leave as AWS JSON 1.1.
"""
