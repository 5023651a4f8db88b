"""``python -m dativo_hsm decrypt …``."""

import sys

from dativo_hsm.cli import main

sys.exit(main())
