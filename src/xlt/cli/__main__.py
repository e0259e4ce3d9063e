"""``python -m xlt.cli``: what ``accelerate launch -m xlt.cli train ...`` runs in every process."""

import sys

from xlt.cli.main import main

sys.exit(main())
