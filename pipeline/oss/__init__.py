"""The source: OSS through oss2. Connection and errors (``client``), resumable page listing
(``pages``), parallel fan-out (``parallel``), listed objects → catalog rows (``catalog``), and
listing progress in the log (``progress``)."""
