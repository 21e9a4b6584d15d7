"""The local OSS checks a signature's age as OSS does: 15 minutes either way, for V1 and V4 headers,
and a pre-signed URL's own validity window.

Why: a signature replayed a year later, or dated with garbage, must be refused locally as the cloud
refuses it (403 ``RequestTimeTooSkewed`` / ``AccessDenied``), or the pipeline's clock handling is
never exercised offline.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import hashlib
import hmac
import http.client
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import oss2
import pytest
import requests

from localcloud.oss.server import Credential, LocalOssServer

AK, SK, BUCKET, REGION = "skew-ak", "skew-secret", "skew-bucket", "cn-hangzhou"
IN_2024 = calendar.timegm((2024, 1, 1, 0, 0, 0))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("skew")
    (root / BUCKET).mkdir()
    with LocalOssServer(root, [Credential(AK, SK)], accept_v1=True) as running:
        yield running


def _oss2_clock(at: float) -> mock._patch:
    """oss2 signs V4 with ``datetime.utcnow()`` (oss2/auth.py imports the class): set its clock."""
    fake = mock.Mock(wraps=datetime.datetime)
    fake.utcnow.return_value = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    return mock.patch("oss2.auth.datetime", fake)


def _v1_put(server: LocalOssServer, date: str | None) -> tuple[int, ET.Element]:
    """A V1-signed PutObject, correctly signed over ``date`` (sent as the Date header unless None)."""
    to_sign = f"PUT\n\n\n{date or ''}\n/{BUCKET}/skewed.txt"
    signature = base64.b64encode(hmac.new(SK.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    headers = {"Authorization": f"OSS {AK}:{signature}", "Content-Length": "2"}
    if date is not None:
        headers["Date"] = date
    url = urlparse(server.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("PUT", f"/{BUCKET}/skewed.txt", skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders(b"hi")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, ET.fromstring(body) if body else ET.Element("Empty")


def test_a_v1_signature_dated_2024_is_too_skewed(server: LocalOssServer) -> None:
    status, error = _v1_put(server, "Mon, 01 Jan 2024 00:00:00 GMT")
    assert status == 403 and error.findtext("Code") == "RequestTimeTooSkewed"
    assert error.findtext("RequestTime") == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert error.findtext("ServerTime", "").startswith(time.strftime("%Y-%m-%dT", time.gmtime()))
    assert error.findtext("MaxAllowedSkewMilliseconds") == "900000"
    assert error.findtext("EC") == "0002-00000504"


@pytest.mark.parametrize("date", ["garbage", None, "2024-01-01"])
def test_a_v1_signature_without_a_valid_date_is_refused(server: LocalOssServer, date: str | None) -> None:
    status, error = _v1_put(server, date)
    assert status == 403 and error.findtext("Code") == "AccessDenied"
    assert error.findtext("EC") == "0002-00000505"


def test_a_v1_signature_dated_now_is_accepted(server: LocalOssServer) -> None:
    status, _ = _v1_put(server, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    assert status == 200


def test_a_v4_signature_dated_2024_is_too_skewed_through_oss2(server: LocalOssServer) -> None:
    bucket = oss2.Bucket(oss2.AuthV4(AK, SK), server.endpoint, BUCKET, region=REGION)
    with _oss2_clock(IN_2024):
        with pytest.raises(oss2.exceptions.ServerError) as err:
            bucket.put_object("skewed-v4.txt", b"hi")
    assert (err.value.status, err.value.code) == (403, "RequestTimeTooSkewed")
    assert err.value.details["RequestTime"].startswith("20240101T")
    assert "ServerTime" in err.value.details


def test_a_v4_presigned_url_dated_ahead_is_not_valid_yet(server: LocalOssServer) -> None:
    """Dated a day ahead with 7 days to run, it would be valid for 8 days: OSS refuses it (EC 0002-00000235)."""
    bucket = oss2.Bucket(oss2.AuthV4(AK, SK), server.endpoint, BUCKET, region=REGION)
    bucket.put_object("presigned.txt", b"hi")
    ahead = time.time() + 24 * 3600
    with _oss2_clock(ahead):
        url = bucket.sign_url("GET", "presigned.txt", 3600)
    assert "x-oss-date=" in url
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 403, answer.text
    assert ET.fromstring(answer.content).findtext("EC") == "0002-00000235"
    assert requests.get(bucket.sign_url("GET", "presigned.txt", 60), timeout=10).content == b"hi"


def test_an_expired_presigned_url_is_refused(server: LocalOssServer) -> None:
    v1 = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, BUCKET)
    v1.put_object("expiring.txt", b"hi")
    with mock.patch("oss2.auth.time.time", return_value=time.time() - 3600):
        url = v1.sign_url("GET", "expiring.txt", 60)
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 403 and b"expired" in answer.content
