"""A local MaxCompute (ODPS) server that the unchanged pyodps client drives over HTTP: the project's
tables and partitions, SQL instances run by DuckDB, and the Table/Instance Tunnel."""
