"""``python -m psal`` runs the command line."""

import sys

from psal.cli import main

sys.exit(main())
