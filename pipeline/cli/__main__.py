"""``python -m pipeline.cli``: the ``leadflow`` command."""

import sys

from pipeline.cli.main import main

sys.exit(main())
