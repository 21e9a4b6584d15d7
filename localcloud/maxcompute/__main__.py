"""``python -m localcloud.maxcompute``: the local MaxCompute server in the foreground (see
:mod:`localcloud.maxcompute.cli`)."""

from localcloud.maxcompute.cli import main

raise SystemExit(main())
