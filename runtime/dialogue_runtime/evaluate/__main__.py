"""Entry point of the evaluation Job: `python -m dialogue_runtime.evaluate --help`."""

import sys

from dialogue_runtime.evaluate.job import main

sys.exit(main())
