"""Entry point of the compression Job image: `python -m dialogue_runtime.compress --help`."""

import sys

from dialogue_runtime.compress.job import main

sys.exit(main())
