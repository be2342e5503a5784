"""``python -m kerasbert.client``: see :mod:`kerasbert.client.cli`."""

import sys

from kerasbert.client.cli import main

sys.exit(main())
