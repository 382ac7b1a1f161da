"""`python -m ssdlite`: the same as the `ssdlite` command."""

import sys

from ssdlite.cli import main

sys.exit(main())
