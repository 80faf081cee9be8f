"""``python -m nst``: the command line."""

import sys

from nst.cli import main

if __name__ == "__main__":
    sys.exit(main())
