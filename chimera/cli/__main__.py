"""`python -m chimera.cli …`: how `ServerProcess` and the tests run the CLI with this interpreter."""

import sys

from chimera.cli import main

sys.exit(main())
