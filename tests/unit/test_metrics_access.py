"""Who may scrape GET /metrics on the API port: loopback peers without
authentication; any other peer only with a SigV4 signature of a principal
allowed keycask:GetMetrics. A refusal is 403 and audited like any refused
request (operation GetMetrics, door metrics). Driven through the built app
(``KMSApp.handle``) with the peer address the HTTP layer would give it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families
from tests.service_harness import HOST, REGION, Service, service

from keycask.http.messages import Request, Response
from keycask.http.metrics import local_host, loopback

REMOTE = "203.0.113.9"


def _get(client: str | None, creds: tuple[str, str] | None = None) -> Request:
    headers: list[tuple[bytes, bytes]] = [(b"host", HOST.encode())]
    if creds is not None:
        signed = AWSRequest(method="GET", url=f"http://{HOST}/metrics")
        SigV4Auth(Credentials(*creds), "kms", REGION).add_auth(signed)
        headers += [
            (name.lower().encode(), value.encode() if isinstance(value, str) else value)
            for name, value in signed.headers.items()
            if name.lower() != "host"
        ]
    return Request("GET", "/metrics", b"/metrics", b"", tuple(headers), b"", client=client)


def _samples(response: Response) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


def _records(svc: Service, response: Response) -> list[dict[str, object]]:
    request_id = dict(response.headers)[b"x-amzn-requestid"].decode()
    return [r for r in svc.audit_records() if r["request_id"] == request_id]


async def _principal(svc: Service, name: str, actions: list[str]) -> tuple[str, str]:
    made = await svc.send("KeycaskAdmin.CreatePrincipal", {"Name": name})
    assert made.status == 200, made.body
    doc = json.loads(made.body)
    if actions:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        put = await svc.send(
            "KeycaskAdmin.PutPrincipalPolicy",
            {"Name": name, "PolicyName": "p", "PolicyDocument": json.dumps(policy)},
        )
        assert put.status == 200, put.body
    return doc["AccessKeyId"], doc["SecretAccessKey"]


def test_loopback_is_every_loopback_address_and_nothing_else() -> None:
    assert all(loopback(a) for a in ("127.0.0.1", "127.8.9.10", "::1"))
    assert not any(loopback(a) for a in (None, REMOTE, "10.0.0.1", "::ffff:10.0.0.1", "x"))


async def test_a_loopback_peer_scrapes_without_a_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        for client in ("127.0.0.1", "::1"):
            response = await svc.runtime.app.handle(_get(client))
            assert response.status == 200
            assert dict(response.headers)[b"content-type"].startswith(b"text/plain; version=0.0.4")
            samples = _samples(response)
            assert samples[("keycask_sealed", frozenset())] == 0
            assert ("keycask_build_info", frozenset({("version", "0.1.0")})) in samples


async def test_an_unsigned_scrape_from_elsewhere_is_refused_and_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        before = _samples(await svc.runtime.app.handle(_get("127.0.0.1")))
        response = await svc.runtime.app.handle(_get(REMOTE))
        assert response.status == 403
        assert b"keycask_" not in response.body
        (record,) = _records(svc, response)
        assert record["operation"] == "GetMetrics" and record["door"] == "metrics"
        assert record["source_ip"] == REMOTE
        assert record["error_code"] == "MissingAuthenticationTokenException"
        after = _samples(await svc.runtime.app.handle(_get("127.0.0.1")))
        missing = ("keycask_auth_failures_total", frozenset({("reason", "missing")}))
        assert after[missing] == before.get(missing, 0) + 1


async def test_a_signed_scrape_needs_keycask_get_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        reader = await _principal(svc, "reader", ["keycask:GetMetrics"])
        other = await _principal(svc, "other", ["kms:Encrypt"])
        denied = ("keycask_authz_denied_total", frozenset({("operation", "GetMetrics")}))
        before = _samples(await svc.runtime.app.handle(_get("127.0.0.1")))

        allowed = await svc.runtime.app.handle(_get(REMOTE, reader))
        assert allowed.status == 200
        assert ("keycask_sealed", frozenset()) in _samples(allowed)
        (record,) = _records(svc, allowed)
        assert (record["operation"], record["outcome"]) == ("GetMetrics", "success")
        assert record["principal"].endswith(":user/reader")

        refused = await svc.runtime.app.handle(_get(REMOTE, other))
        assert refused.status == 403
        assert json.loads(refused.body)["__type"] == "AccessDeniedException"
        (record,) = _records(svc, refused)
        assert (record["decision"], record["error_code"]) == ("deny", "AccessDeniedException")

        admin = await svc.runtime.app.handle(_get(REMOTE, (svc.access_key[0], svc.access_key[1])))
        assert admin.status == 200

        bad = await svc.runtime.app.handle(_get(REMOTE, (reader[0], "x" * 40)))
        assert bad.status == 403
        after = _samples(await svc.runtime.app.handle(_get("127.0.0.1")))
        assert after[denied] == before.get(denied, 0) + 1
        signature = ("keycask_auth_failures_total", frozenset({("reason", "bad_signature")}))
        assert after[signature] == before.get(signature, 0) + 1


def test_authentication_failures_are_named_by_a_few_fixed_reasons() -> None:
    from keycask import errors
    from keycask.service.pipeline import auth_failure_reason

    cases = {
        errors.MissingAuthenticationTokenException("x"): "missing",
        errors.IncompleteSignatureException("x"): "malformed",
        errors.InvalidSignatureException("The request signature we calculated ..."): (
            "bad_signature"
        ),
        errors.InvalidSignatureException("Signature expired: 20261207T000000Z is now ..."): "skew",
        errors.InvalidSignatureException("Signature not yet current: ..."): "skew",
        errors.InvalidSignatureException("Credential should be scoped to correct service"): (
            "scope"
        ),
        errors.InvalidSignatureException("Date in Credential scope does not match"): "scope",
        errors.UnrecognizedClientException("The security token ... is invalid."): "unknown_key",
        errors.UnrecognizedClientException("The operator token is not valid."): "operator_token",
        errors.ExpiredTokenException("x"): "expired",
        errors.InvalidIdentityTokenException("x"): "web_identity",
    }
    assert [auth_failure_reason(e) for e in cases] == list(cases.values())


async def test_requests_refused_before_any_door_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        series = (
            "keycask_requests_total",
            frozenset(
                {
                    ("door", "none"),
                    ("operation", "other"),
                    ("outcome", "error"),
                    ("error_code", "UnknownOperationException"),
                }
            ),
        )
        before = _samples(await svc.runtime.app.handle(_get("127.0.0.1"))).get(series, 0)
        wrong = Request("GET", "/nothing", b"/nothing", b"", ((b"host", HOST.encode()),), b"")
        assert (await svc.runtime.app.handle(wrong)).status == 400
        after = _samples(await svc.runtime.app.handle(_get("127.0.0.1")))
        assert after[series] == before + 1


def test_a_local_host_is_an_address_or_localhost() -> None:
    def local(host: bytes | None) -> bool:
        return local_host(() if host is None else ((b"host", host),))

    for host in (None, b"127.0.0.1", b"127.0.0.1:9567", b"localhost:9567", b"[::1]:80", b"[::1]"):
        assert local(host), host
    for host in (b"evil.example", b"evil.example:9567", b"127.0.0.1.nip.io", b"localhost.evil"):
        assert not local(host), host


async def test_a_rebound_name_on_loopback_is_not_answered_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a page of evil.example whose name now points to
    127.0.0.1 reaches keycask from loopback with its own name as Host. It
    gets the signed path's refusal, never the metrics."""
    async with service(tmp_path, monkeypatch) as svc:
        rebound = Request(
            "GET", "/metrics", b"/metrics", b"", ((b"host", b"evil.example:9567"),), b"",
            client="127.0.0.1",
        )  # fmt: skip
        response = await svc.runtime.app.handle(rebound)
        assert response.status == 403
        assert b"keycask_" not in response.body


async def test_another_accounts_administrator_may_not_scrape_or_list_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The series and the nodes are the whole node's, every account's: a
    tenant administrator's allow-all does not reach them, only principals of
    the operator account do."""
    async with service(tmp_path, monkeypatch) as svc:
        access = await svc.runtime.credentials.create_principal(
            "222233334444", "tenant-admin", admin=True
        )
        tenant = (access.access_key_id, access.secret)
        refused = await svc.runtime.app.handle(_get(REMOTE, tenant))
        assert refused.status == 403
        assert b"keycask_" not in refused.body
        assert "operator account" in json.loads(refused.body)["message"]
        (record,) = _records(svc, refused)
        assert record["error_code"] == "AccessDeniedException"
        nodes = await replace(svc, access_key=tenant).send("KeycaskAdmin.ListNodes", {})
        assert nodes.status == 400, nodes.body
        assert json.loads(nodes.body)["__type"] == "AccessDeniedException"
        assert (await svc.send("KeycaskAdmin.ListNodes", {})).status == 200
