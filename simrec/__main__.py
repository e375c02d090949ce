"""``python -m simrec ...`` runs the command line."""

import sys

from simrec.cli import main

sys.exit(main())
