"""``python -m localcloud.opensearch --config FILE``: the local OpenSearch server in the foreground
(see :mod:`localcloud.opensearch.cli`)."""

from localcloud.opensearch.cli import main

raise SystemExit(main())
