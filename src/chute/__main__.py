"""``python -m chute``: the ``chute`` command."""

import sys

from chute.cli.main import main

sys.exit(main())
