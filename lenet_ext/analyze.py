"""python -m lenet_ext.analyze RUN_DIR: write the study of a training run (see lenet_ext.analysis)."""
import sys

from .analysis import main

if __name__ == "__main__":
    sys.exit(main())
