"""The HA (Havenask/HA3) query grammar, shared by our query client and the local OpenSearch server:
the query string (``grammar``), its filter clause (``filter``), what may travel inside a vector term
(``content``) and Havenask's error codes (``errors``)."""
