"""``python -m pipeline.cli``: the ``leadflow`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
