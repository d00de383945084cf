"""`python -m zoo …` (and `torchrun -m zoo …`): the command line."""

import sys

from .cli import main

sys.exit(main())
