"""What the KMS does, and the one path every request takes to it.

``core/``: the operations, their typed requests and results, key resolution
and authorization, the handlers; no wire format. ``doors/``: one module per
front door (wire protocol), each implementing ``door.Door``. ``pipeline.py``:
the envelope around every door (authenticate, decode, handle, audit, commit,
answer). ``background/``: what runs without a request (lifecycle jobs, usage
flush, barrier rewrite)."""
