"""python -m lenet_ext.serve: the command line (lenet_ext.serve.command)."""

import sys

from .command import main

sys.exit(main())
