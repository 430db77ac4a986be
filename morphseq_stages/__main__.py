"""``python -m morphseq_stages``: the same command as ``morphseq-stages``."""

import sys

from .cli import main

sys.exit(main())
