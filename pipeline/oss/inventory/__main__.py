"""``python -m pipeline.oss.inventory setup|show --config dags/indexes/<index>.yaml``: see :mod:`.cli`."""

import sys

from pipeline.oss.inventory.cli import main

sys.exit(main())
