"""``python -m localcloud.oss``: the local OSS server in the foreground (see :mod:`localcloud.oss.cli`)."""

from localcloud.oss.cli import main

raise SystemExit(main())
