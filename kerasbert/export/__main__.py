"""`python -m kerasbert.export`: see `kerasbert.export.cli`."""

import sys

from kerasbert import cli

cli.quiet_tensorflow()  # before kerasbert.export.cli imports tensorflow

from kerasbert.export.cli import run  # noqa: E402

sys.exit(run())
