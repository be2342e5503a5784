"""`python -m kerasbert.export`: see `kerasbert.export.cli`."""

import sys

from kerasbert.export.cli import run

sys.exit(run())
