"""The demo bucket: a few hundred generated product images plus objects the filters must skip.

Deterministic (seeded per key) so repeated demos and tests see the same bucket. Objects are written
through oss2 against the local OSS server, exercising the same protocol the pipeline lists with.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass

import oss2

CATEGORIES = {"shoes": 1, "bags": 2, "hats": 3, "watches": 4}


@dataclass(frozen=True)
class DemoObject:
    key: str
    data: bytes
    storage_class: str = "Standard"


def _image(seed: int, fmt: str, size: int = 96) -> bytes:
    """A small picture of random coloured shapes: distinct per seed, cheap to make."""
    from PIL import Image, ImageDraw  # Pillow is needed only to make demo data

    rng = random.Random(seed)
    background = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 7)):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        x1, y1 = min(size, x0 + rng.randint(8, size // 2)), min(size, y0 + rng.randint(8, size // 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(("rectangle", "ellipse", "line"))
        if shape == "line":
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randint(2, 6))
        else:
            getattr(draw, shape)((x0, y0, x1, y1), fill=colour)
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def demo_objects(per_category: int = 80, prefix: str = "catalog/") -> Iterator[DemoObject]:
    """Images in four mapped categories, and the objects the demo config skips, by reason."""
    for category, cate_id in CATEGORIES.items():
        yield DemoObject(f"{prefix}{category}/", b"")  # a console-made folder marker
        for i in range(1, per_category + 1):
            image_id = cate_id * 10000 + i
            if i % 10 == 0:  # some PNGs with upper-case extensions: matched case-insensitively
                yield DemoObject(f"{prefix}{category}/{image_id}.PNG", _image(image_id, "PNG"))
            else:
                yield DemoObject(f"{prefix}{category}/{image_id}.jpg", _image(image_id, "JPEG"))
    for i in range(1, 6):  # a category the mapping does not know: counted as unmapped_category
        yield DemoObject(f"{prefix}misc/{90000 + i}.jpg", _image(90000 + i, "JPEG"))
    yield DemoObject(f"{prefix}shoes/README.txt", b"Product shots, 96x96, generated for the demo.\n")
    yield DemoObject(f"{prefix}bags/manifest.json", b'{"generated": true}\n')
    yield DemoObject(f"{prefix}hats/30999.jpg", b"")  # zero bytes: an upload that never finished
    yield DemoObject(f"{prefix}watches/40999.jpg", b"")
    noise = random.Random(7).randbytes(300 * 1024)  # above the demo's 256 KiB max_size_bytes
    yield DemoObject(f"{prefix}bags/29999.png", noise)
    yield DemoObject(f"{prefix}shoes/cover-photo.jpg", _image(5, "JPEG"))  # no digits: bad_id
    # An image moved to the Archive class and never restored: nobody can read it, so it is no row.
    yield DemoObject(f"{prefix}watches/40998.jpg", _image(40998, "JPEG"), storage_class="Archive")


def undecodable_objects(good: int = 48, broken: int = 2, prefix: str = "planted/") -> Iterator[DemoObject]:
    """A folder for a build that must leave some rows out: ``good`` pictures (ids 19001...) and ``broken``
    files with image names that no decoder reads (ids 19901...: an upload cut short, a converter gone
    wrong), all under ``<prefix>shoes/``, so the demo config maps them to category 1. Outside
    ``catalog/``: the demo's own prefix lists none of them."""
    for i in range(1, good + 1):
        yield DemoObject(f"{prefix}shoes/{19000 + i}.jpg", _image(19000 + i, "JPEG"))
    for i in range(1, broken + 1):
        yield DemoObject(f"{prefix}shoes/{19900 + i}.jpg", b"\xff\xd8\xff\xe0 cut short: not a whole JPEG " * i)


def upload_objects(bucket: oss2.Bucket, objects: Iterator[DemoObject]) -> int:
    """Put every object not there yet (the bucket must exist); return how many were written."""
    written = 0
    for obj in objects:
        if not bucket.object_exists(obj.key):
            bucket.put_object(obj.key, obj.data)
            written += 1
    return written


def upload_demo_bucket(bucket: oss2.Bucket, per_category: int = 80) -> int:
    """Create the bucket if needed and put every demo object not there yet; return how many were written."""
    try:
        existing = {obj.key for obj in oss2.ObjectIteratorV2(bucket, prefix="catalog/", max_keys=1000)}
    except oss2.exceptions.NoSuchBucket:
        bucket.create_bucket()
        existing = set()
    written = 0
    for obj in demo_objects(per_category):
        if obj.key not in existing:
            headers = {"x-oss-storage-class": obj.storage_class} if obj.storage_class != "Standard" else None
            bucket.put_object(obj.key, obj.data, headers=headers)
            written += 1
    return written


def reset_demo_bucket(bucket: oss2.Bucket, per_category: int = 80) -> dict[str, int]:
    """Put the demo bucket's ``catalog/`` back exactly as :func:`demo_objects` makes it: objects whose
    bytes differ (ETag: the MD5 of a simple upload) are put again, objects the demo does not make are
    deleted (what an earlier ``--change`` added). Returns how many were put and deleted."""
    import hashlib

    upload_demo_bucket(bucket, per_category)
    listed = {obj.key: obj.etag.strip('"').lower() for obj in oss2.ObjectIteratorV2(bucket, prefix="catalog/")}
    put = deleted = 0
    wanted = set()
    for obj in demo_objects(per_category):
        wanted.add(obj.key)
        if listed.get(obj.key) != hashlib.md5(obj.data, usedforsecurity=False).hexdigest():
            headers = {"x-oss-storage-class": obj.storage_class} if obj.storage_class != "Standard" else None
            bucket.put_object(obj.key, obj.data, headers=headers)
            put += 1
    for key in sorted(set(listed) - wanted):
        bucket.delete_object(key)
        deleted += 1
    return {"put": put, "deleted": deleted}


def change_demo_bucket(bucket: oss2.Bucket, fraction: float, per_category: int = 80, seed: int = 14) -> dict[str, list[str]]:
    """Change ``fraction`` of the demo's images, as a day of catalog work does: a third are new images
    (new ids, 5xxxx in each category), a third are replaced under the same key (new bytes, same id), a
    third are deleted. Deterministic for a seed. Returns the keys by kind."""
    images = [obj.key for obj in demo_objects(per_category)
              if obj.key.rsplit("/", 1)[-1][:1].isdigit() and obj.data and obj.storage_class == "Standard"
              and "/misc/" not in obj.key and len(obj.data) < 256 * 1024]
    count = max(3, round(len(images) * fraction))
    rng = random.Random(seed)
    chosen = rng.sample(images, min(len(images), 2 * (count // 3) + count % 3))
    replaced, deleted = chosen[: len(chosen) // 2], chosen[len(chosen) // 2:]
    added = []
    for n in range(count - len(chosen)):
        category, cate_id = list(CATEGORIES.items())[n % len(CATEGORIES)]
        image_id = cate_id * 10000 + 5000 + n
        key = f"catalog/{category}/{image_id}.jpg"
        bucket.put_object(key, _image(seed * 100000 + image_id, "JPEG"))
        added.append(key)
    for key in replaced:
        bucket.put_object(key, _image(seed * 100000 + int(key.rsplit("/", 1)[-1].split(".")[0]), "JPEG"))
    for key in deleted:
        bucket.delete_object(key)
    return {"added": added, "replaced": replaced, "deleted": deleted}
