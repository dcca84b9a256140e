"""``python -m firmware``: the lock daemon (same as ``facelockd``)."""

import sys

from firmware.daemon import main

sys.exit(main())
