"""Request signatures as the service checks pyodps': requests are signed by pyodps' own accounts
(``odps.accounts``), then verified; the server tests drive the same checks over HTTP."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
from odps.accounts import CloudAccount, StsAccount

from localcloud.maxcompute.auth import RequestVerifier
from localcloud.maxcompute.errors import MaxComputeError
from localcloud.ram import TokenAuthority

ENDPOINT = "http://127.0.0.1:1/api"
KEYS = {"LTAIlocal": "s3cret"}


def signed(account, url: str = "/projects/p/tables/t?partition=ds%3D20261201&curr_project=p", *,
           region: str | None = None, method: str = "GET", date: str | None = None) -> tuple[str, str, dict]:
    request = requests.Request(method, ENDPOINT + url, headers={"x-odps-user-agent": "pyodps",
                                                               "Content-Type": "application/xml"}).prepare()
    if date:
        request.headers["Date"] = date
    account.sign_request(request, ENDPOINT, region_name=region)
    return method, request.url[len(ENDPOINT):], dict(request.headers)


@pytest.fixture
def authority():
    return TokenAuthority(b"k" * 32)


@pytest.mark.parametrize("region", [None, "cn-hangzhou"], ids=["legacy", "v4"])
def test_pyodps_signatures_verify_in_both_forms(region, authority):
    caller = RequestVerifier(KEYS, "cn-hangzhou", authority=authority).verify(
        *signed(CloudAccount("LTAIlocal", "s3cret"), region=region))
    assert (caller.access_key_id, caller.temporary, caller.signature_version) == \
        ("LTAIlocal", False, "v4" if region else "v2")


@pytest.mark.parametrize(("account", "region", "code"), [
    (CloudAccount("LTAIlocal", "wrong"), None, "SignatureNotMatch"),
    (CloudAccount("LTAIlocal", "wrong"), "cn-hangzhou", "SignatureNotMatch"),
    (CloudAccount("LTAIother", "s3cret"), None, "InvalidParameter"),
    (CloudAccount("LTAIlocal", "s3cret"), "cn-shanghai", "InvalidParameter"),
])
def test_wrong_keys_and_regions_are_refused(account, region, code):
    with pytest.raises(MaxComputeError) as info:
        RequestVerifier(KEYS, "cn-hangzhou").verify(*signed(account, region=region))
    assert info.value.code == code


def test_a_changed_parameter_breaks_the_signature():
    method, resource, headers = signed(CloudAccount("LTAIlocal", "s3cret"))
    with pytest.raises(MaxComputeError, match="signature dose not match"):
        RequestVerifier(KEYS, "cn-hangzhou").verify(method, resource.replace("20261201", "20261202"), headers)


def test_a_request_dated_beyond_15_minutes_is_refused():
    stale = email.utils.formatdate(time.time() - 16 * 60, usegmt=True)
    with pytest.raises(MaxComputeError) as info:
        RequestVerifier(KEYS, "cn-hangzhou").verify(*signed(CloudAccount("LTAIlocal", "s3cret"), date=stale))
    assert info.value.code == "RequestTimeTooSkewed"


def test_temporary_credentials_need_their_token_and_expire(authority):
    now = [time.time()]
    authority.clock = lambda: now[0]
    verifier = RequestVerifier(KEYS, "cn-hangzhou", authority=authority, clock=time.time)
    token = authority.issue("acs:ram::1:role/r", "s", 900)
    account = StsAccount(token.access_key_id, token.access_key_secret, token.security_token)
    assert verifier.verify(*signed(account, region="cn-hangzhou")).temporary
    without_token = CloudAccount(token.access_key_id, token.access_key_secret)
    with pytest.raises(MaxComputeError, match="no security token"):
        verifier.verify(*signed(without_token))
    with pytest.raises(MaxComputeError, match="long-lived"):
        verifier.verify(*signed(StsAccount("LTAIlocal", "s3cret", token.security_token)))
    now[0] += 901
    with pytest.raises(MaxComputeError) as info:
        verifier.verify(*signed(account))
    assert (info.value.status, info.value.code) == (401, "AuthenticationRequestExpired")


def test_an_unsigned_request_is_refused():
    with pytest.raises(MaxComputeError) as info:
        RequestVerifier(KEYS, "cn-hangzhou").verify("GET", "/projects/p", {"Date": email.utils.formatdate(usegmt=True)})
    assert info.value.status == 401
