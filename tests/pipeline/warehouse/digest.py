"""An independent reference for the id-set digest the warehouses compute in SQL (sql/partition_stats.sql)."""

import hashlib


def reference_digest_sums(ids) -> tuple[int, int]:
    """sql/partition_stats.sql's id_digest_high and id_digest_low: sums over the distinct ids of the
    first and second 32-bit slices of MD5(decimal id), read as hex."""
    hexes = [hashlib.md5(str(i).encode()).hexdigest() for i in {int(i) for i in ids}]
    return sum(int(h[:8], 16) for h in hexes), sum(int(h[8:16], 16) for h in hexes)


def reference_id_digest(ids) -> str:
    """MD5 of ``"<distinct ids>:<sum of MD5(id)[0:8]>:<sum of MD5(id)[8:16]>"``, the slices read as hex."""
    distinct = {int(i) for i in ids}
    hexes = [hashlib.md5(str(i).encode()).hexdigest() for i in distinct]
    high = sum(int(h[:8], 16) for h in hexes)
    low = sum(int(h[8:16], 16) for h in hexes)
    return hashlib.md5(f"{len(distinct)}:{high}:{low}".encode()).hexdigest()
