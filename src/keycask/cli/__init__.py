"""The ``keycask`` command line: argparse front ends over ``keycask.app`` and
the running server's APIs (see ``main`` for the entry point)."""
