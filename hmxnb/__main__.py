"""`python -m hmxnb ...`: the runner's command line (hmxnb.runner.cli)."""

import sys

from hmxnb.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
