"""`python -m serve [overrides]`: serve a bundle on serve.host:port."""

import sys

from rolecall.cli import main

main(["serve", *sys.argv[1:]])
