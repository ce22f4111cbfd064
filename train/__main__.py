"""`python -m train [overrides]`: the offline chain for one dataset."""

import sys

from rolecall.cli import main

main(["train", *sys.argv[1:]])
