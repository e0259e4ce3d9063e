"""``python -m xlt.cli``: the ``xlt`` command."""

import sys

from xlt.cli.main import main

sys.exit(main())
