"""``python -m keycask.cli``: what the ``keycask`` console script runs."""

import sys

from keycask.cli.main import main

sys.exit(main())
