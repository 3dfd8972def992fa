"""python -m lenet_ext.experiments: see the package's doc."""

import sys

from . import main

sys.exit(main())
