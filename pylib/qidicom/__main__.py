"""``python -m qidicom`` runs the command line tool."""

import sys

from qidicom.cli import main

sys.exit(main())
