"""``python -m tckr.cli ...``: the ``tckr`` command, for launchers that take a module (``accelerate launch -m``)."""

import sys

from tckr.cli.parser import main

sys.exit(main())
