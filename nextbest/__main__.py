"""`python -m nextbest`: the `nextbest` command line."""

import sys

from nextbest.cli import main

if __name__ == "__main__":
    sys.exit(main())
