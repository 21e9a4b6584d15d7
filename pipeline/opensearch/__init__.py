"""The index: OpenSearch Retrieval Engine Edition through its two SDKs. Connection and errors
(``connection``), the management API (``management``), rebuild and wait (``rebuild``), HA queries
(``search``, with the grammar in ``ha/``), and the smoke queries that prove a new index answers
(``smoke``)."""
