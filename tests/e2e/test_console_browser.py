"""The web console in a real browser: Playwright driving Debian's chromium
(``make chromium``; never a browser Playwright downloads) against a real
keycask server.

The walk an operator takes (sign in, create a key, lint and save its
policy, disable it, schedule its deletion, read the audit log), the
security headers, escaping of hostile key descriptions and tags, and the
hostile cases: wrong credentials, no secret left in browser storage, a
principal without rights sees refusals, and a server that would serve the
console over plain HTTP off loopback refuses to start.

Screenshots of the main pages go to a temp dir, or to the directory in
``KEYCASK_CONSOLE_SCREENSHOTS`` (docs/console/ is made with it).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from playwright.sync_api import Browser, Page, expect, sync_playwright
from production import unsealed_shamir

import keycask
from conftest import Server, dev_call, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = "<img src=x onerror=window.__pwned=2>"
ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("console") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless; Playwright gives it a fresh, temporary
    user-data-dir, and each test a context (storage, cookies, clock) of its own."""
    assert Path(CHROMIUM).exists(), "the console tests need Debian's chromium: make chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # ignore_https_errors: the production test's server has a self-signed certificate.
    context = browser.new_context(viewport={"width": 1280, "height": 860}, ignore_https_errors=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []  # no script error, and no CSP-blocked script that threw


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("KEYCASK_CONSOLE_SCREENSHOTS")
    if wanted:
        path = Path(wanted)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


def sign_in(page: Page, server: Server, credentials: tuple[str, str] | None = None) -> None:
    akid, secret = credentials or server.credentials()
    sign_in_at(page, server.endpoint, akid, secret)


def sign_in_at(page: Page, endpoint: str, akid: str, secret: str) -> None:
    page.goto(endpoint + "/console/")
    page.get_by_label("Access key id").fill(akid)
    page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(re.compile(r"^arn:aws:iam::"))


def pwned(page: Page) -> Any:
    return page.evaluate("() => window.__pwned")


# -- SigV4 in the browser --


def test_sigv4_js_signs_as_botocore_does(
    page: Page, console_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore import auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    page.goto(console_server.endpoint + "/console/")
    body = json.dumps({"KeyId": "alias/ünïcode", "Limit": 5})
    args = {
        "host": f"127.0.0.1:{console_server.port}",
        "headers": {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "TrentService.DescribeKey",
        },
        "body": body,
        "accessKeyId": "AKKCEXAMPLE",
        "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "region": "eu-central-1",
        "service": "kms",
        "now": "2026-03-04T05:06:07Z",
    }
    signed = page.evaluate(
        """async (a) => {
            const { sign } = await import('/console/sigv4.js');
            return sign({ ...a, now: new Date(a.now) });
        }""",
        args,
    )
    fixed = datetime.datetime(2026, 3, 4, 5, 6, 7)
    monkeypatch.setattr(auth, "get_current_datetime", lambda: fixed)
    request = AWSRequest(
        method="POST",
        url=f"http://127.0.0.1:{console_server.port}/",
        data=body.encode(),
        headers=dict(args["headers"]),
    )
    auth.SigV4Auth(
        Credentials("AKKCEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        "kms",
        "eu-central-1",
    ).add_auth(request)
    assert signed["Authorization"] == request.headers["Authorization"]
    assert signed["X-Amz-Date"] == request.headers["X-Amz-Date"] == "20260304T050607Z"


def test_sigv4_js_signs_a_metrics_scrape_as_botocore_does(
    page: Page, console_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Health page's GET /metrics, signed as the metrics door checks it
    off loopback (test_metrics_e2e.py scrapes signed by botocore)."""
    from botocore import auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    page.goto(console_server.endpoint + "/console/")
    host = f"127.0.0.1:{console_server.port}"
    signed = page.evaluate(
        """async (host) => {
            const { sign } = await import('/console/sigv4.js');
            return sign({ host, headers: {}, body: "", method: "GET", path: "/metrics",
                          accessKeyId: "AKKCEXAMPLE", region: "eu-central-1", service: "kms",
                          secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                          now: new Date("2026-03-04T05:06:07Z") });
        }""",
        host,
    )
    fixed = datetime.datetime(2026, 3, 4, 5, 6, 7)
    monkeypatch.setattr(auth, "get_current_datetime", lambda: fixed)
    request = AWSRequest(method="GET", url=f"http://{host}/metrics")
    auth.SigV4Auth(
        Credentials("AKKCEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        "kms",
        "eu-central-1",
    ).add_auth(request)
    assert signed["Authorization"] == request.headers["Authorization"]
    assert "SignedHeaders=host;x-amz-date," in signed["Authorization"]


# -- the operator's walk --


def test_sign_in_create_lint_disable_delete_and_audit(
    page: Page, console_server: Server, shots: Path
) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()

    # Create a symmetric key whose description and tag are hostile markup.
    page.get_by_role("link", name="Create key").click()
    expect(page.get_by_label("Key usage")).to_have_value("ENCRYPT_DECRYPT")
    page.get_by_label("Key type").select_option("hmac")
    expect(page.get_by_label("Key usage")).to_have_value("GENERATE_VERIFY_MAC")
    page.get_by_label("Key type").select_option("symmetric")
    page.get_by_label("Description").fill(SCRIPT)
    page.get_by_label("Alias").fill("alias/console-walk")
    page.get_by_label("Tag key").fill("owner")
    page.get_by_label("Tag value").fill(IMG)
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#key-state")).to_have_text("Enabled")
    key_id = page.url.split("#/key/")[1].split("/")[0]
    assert re.fullmatch(r"[0-9a-f-]{36}", key_id)
    # The description is shown as text: the markup is visible, nothing ran.
    expect(page.locator("dd", has_text=SCRIPT)).to_have_count(1)
    page.screenshot(path=str(shots / "key-general.png"))
    page.get_by_role("link", name="Tags").click()
    expect(page.get_by_role("cell", name=IMG, exact=True)).to_be_visible()
    assert pwned(page) is None

    # The list shows it, by alias, with its state and spec.
    page.get_by_role("link", name="Keys", exact=True).click()
    row = page.get_by_role("row", name=re.compile(key_id))
    expect(row).to_contain_text("alias/console-walk")
    expect(row).to_contain_text("SYMMETRIC_DEFAULT")
    page.get_by_label("Filter this page").fill("console-walk")
    expect(page.get_by_role("row")).to_have_count(2)  # the header and the key
    page.screenshot(path=str(shots / "keys.png"))
    page.get_by_label("Filter this page").fill("")

    # Key policy: lint shows a finding before saving; the save works.
    page.get_by_role("link", name=key_id).click()
    page.get_by_role("link", name="Key policy").click()
    editor = page.get_by_label("Policy document (JSON)")
    expect(editor).to_have_value(re.compile("Enable IAM User Permissions"))
    policy = json.loads(editor.input_value())
    policy["Statement"].append(
        {
            "Sid": "Everyone",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "kms:Decrypt",
            "Resource": "*",
        }
    )
    editor.fill(json.dumps(policy, indent=2))
    expect(page.get_by_role("button", name="Save policy")).to_be_disabled()
    page.get_by_role("button", name="Check policy").click()
    finding = page.locator("#lint-findings li", has_text="public-principal")
    expect(finding).to_contain_text("high")
    expect(finding).to_contain_text("Everyone")
    page.screenshot(path=str(shots / "key-policy.png"), full_page=True)
    # Saving re-renders the key page: the editor is replaced once it has, and
    # typing into the old one meanwhile would be lost (seen under CI's load).
    old_editor = page.locator("#policy-editor").element_handle()
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#status")).to_have_text("Key policy saved.")
    old_editor.wait_for_element_state("hidden")
    saved = console_server.client().get_key_policy(KeyId=key_id, PolicyName="default")
    assert "Everyone" in saved["Policy"]

    # A policy that would lock the caller out is refused, and says so.
    editor = page.get_by_label("Policy document (JSON)")
    lockout = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    editor.fill(json.dumps(lockout))
    page.get_by_role("button", name="Check policy").click()
    expect(page.locator("#lint-findings")).to_contain_text("lockout")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#policy-refusal")).to_contain_text("Refused by the lockout safety check")

    # Disable it, then schedule its deletion with a typed confirmation.
    page.get_by_role("button", name="Disable key").click()
    expect(page.locator("#key-state")).to_have_text("Disabled")
    page.get_by_text("Schedule deletion…").click()
    page.get_by_label("Waiting period (days, 7-30)").fill("7")
    go = page.get_by_role("button", name="Schedule deletion")
    page.get_by_label(f"Type {key_id} to confirm").fill(key_id[:-1])
    expect(go).to_be_disabled()
    page.get_by_label(f"Type {key_id} to confirm").fill(key_id)
    go.click()
    expect(page.locator("#key-state")).to_have_text("PendingDeletion")
    meta = console_server.client().describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    waiting = meta["DeletionDate"] - meta["CreationDate"]
    assert datetime.timedelta(days=6, hours=23) < waiting < datetime.timedelta(days=7, hours=1)

    # The audit view: every step above, under the signed-in principal.
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Key", exact=True).fill(key_id)
    page.get_by_label("Verify the hash chain (reads the whole log)").check()
    page.get_by_role("button", name="Show records").click()
    expect(page.locator("#chain-status")).to_contain_text("Chain verified")
    table = page.locator("#audit-results table")
    for operation in ("CreateKey", "PutKeyPolicy", "DisableKey", "ScheduleKeyDeletion"):
        expect(table).to_contain_text(operation)
    expect(table).to_contain_text(f"arn:aws:iam::{ACCOUNT}:user/admin")
    page.get_by_label("Outcome").select_option("error")
    page.get_by_role("button", name="Show records").click()
    expect(table.get_by_role("row")).to_have_count(2)  # only the refused PutKeyPolicy
    expect(table).to_contain_text("MalformedPolicyDocumentException")
    page.screenshot(path=str(shots / "audit.png"))
    assert pwned(page) is None


def test_access_page_creates_a_principal_and_shows_its_secret_once(
    page: Page, console_server: Server, shots: Path
) -> None:
    sign_in(page, console_server)
    page.get_by_role("link", name="Access").click()
    page.get_by_label("Name").fill("console-reader")
    page.get_by_role("button", name="Create principal").click()
    secret = page.locator("#new-secret").text_content()
    assert secret and len(secret) >= 40
    page.get_by_role("button", name="I have copied it").click()
    expect(page.locator("#new-secret")).to_have_count(0)
    page.get_by_role("link", name="console-reader").click()
    rows = page.locator("table").first.get_by_role("row")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("Active")
    # The listing never holds a secret.
    assert secret not in page.content()
    page.get_by_role("button", name="Deactivate").click()
    expect(rows.nth(1)).to_contain_text("Inactive")
    page.screenshot(path=str(shots / "access.png"))
    page.get_by_role("button", name="Activate").click()
    expect(rows.nth(1)).to_contain_text("Active")
    # Deleting asks first; once confirmed the key is gone and stops working.
    akid = rows.nth(1).locator("td").first.text_content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(rows.nth(1)).to_contain_text("None")
    with pytest.raises(Exception, match="UnrecognizedClient"):
        console_server.client(access_key=(str(akid), secret)).list_keys()


def _chart_points(page: Page, chart: str) -> int:
    points = page.locator(f"#{chart} polyline").get_attribute("points") or ""
    return len(points.split())


def test_health_page(page: Page, console_server: Server, shots: Path) -> None:
    sign_in(page, console_server)
    page.get_by_role("link", name="Health").click()
    facts = page.locator("#health-facts")
    expect(facts).to_contain_text("200 ok")
    expect(facts.locator("dt", has_text="Version").locator("+ dd")).to_have_text(
        keycask.__version__
    )
    status = page.locator("#operator-status")
    expect(status.locator("dt", has_text="Sealed").locator("+ dd")).to_have_text("no")
    expect(status.locator("dt", has_text="Seal type").locator("+ dd")).to_have_text("dev")
    node = page.locator("#nodes tbody tr")
    expect(node).to_have_count(1)
    expect(node).to_contain_text("(this node)")
    expect(node).to_contain_text(console_server.endpoint)
    expect(node.locator(".state")).to_have_text("ready")
    # Traffic, some of it refused, while the page scrapes /metrics: both
    # charts gain points, and their text alternatives say so.
    kms = console_server.client()
    deadline = time.monotonic() + 30
    while _chart_points(page, "chart-requests") < 2 or _chart_points(page, "chart-errors") < 2:
        assert time.monotonic() < deadline, "the charts gained no points"
        for _ in range(5):
            kms.list_keys(Limit=1)
        with pytest.raises(ClientError):
            kms.describe_key(KeyId="alias/no-such-key")
        page.wait_for_timeout(300)
    for chart, caption in (("chart-requests", "Requests"), ("chart-errors", "Errors")):
        figure = page.locator(f"#{chart}")
        expect(figure.locator("figcaption")).to_have_text(f"{caption} per second")
        summary = figure.locator(".chart-summary")
        expect(summary).to_contain_text(re.compile(r"^Now [0-9.]+/s; at most [0-9.]+/s"))
        assert figure.locator("svg").get_attribute("aria-describedby") == f"{chart}-summary"
    expect(page.locator("#chart-errors .chart-summary")).not_to_contain_text("at most 0.00/s")
    if os.environ.get("KEYCASK_CONSOLE_SCREENSHOTS"):
        # For docs/console/health.png: half a minute of uneven traffic.
        for second in range(30):
            for _ in range(2 + (second * 7) % 11):
                kms.list_keys(Limit=1)
            if second % 4 == 0:
                with pytest.raises(ClientError):
                    kms.describe_key(KeyId="alias/no-such-key")
            page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "health.png"), full_page=True)


# -- security --


def test_security_headers_on_the_console(page: Page, console_server: Server) -> None:
    response = page.goto(console_server.endpoint + "/console/")
    assert response is not None
    headers = response.headers
    assert headers["content-security-policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    script = page.request.get(console_server.endpoint + "/console/app.js")
    assert script.headers["content-security-policy"] == headers["content-security-policy"]
    assert script.headers["content-type"].startswith("text/javascript")
    # An inline script a page might inject is blocked by the policy.
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__pwned = 3'; document.body.append(s); }"""
    )
    assert pwned(page) is None


def test_hostile_tag_and_description_set_outside_are_shown_as_text(
    page: Page, console_server: Server
) -> None:
    kms = console_server.client()
    key_id = kms.create_key(
        Description=IMG + SCRIPT, Tags=[{"TagKey": SCRIPT, "TagValue": SCRIPT}]
    )["KeyMetadata"]["KeyId"]
    sign_in(page, console_server)
    expect(page.get_by_role("row", name=re.compile(key_id))).to_be_visible()
    page.get_by_role("link", name=key_id).click()
    expect(page.locator("dd", has_text=IMG + SCRIPT)).to_have_count(1)
    page.get_by_role("link", name="Tags").click()
    expect(page.get_by_role("cell", name=SCRIPT, exact=True)).to_have_count(2)
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("img").count() == 0
    assert pwned(page) is None


def test_no_secret_kept_in_storage_cookies_or_the_page(page: Page, console_server: Server) -> None:
    _, secret = console_server.credentials()
    sign_in(page, console_server)
    kept = page.evaluate(
        """() => ({ local: localStorage.length, session: sessionStorage.length,
                    cookie: document.cookie, field: document.getElementById('secret').value })"""
    )
    assert kept == {"local": 0, "session": 0, "cookie": "", "field": ""}
    assert secret not in page.content()
    assert page.context.cookies() == []
    # Sign-out forgets the key: the next call needs a new sign-in.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.evaluate("() => { location.hash = '#/keys'; }")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()


def test_wrong_credentials_are_refused(page: Page, console_server: Server) -> None:
    akid, secret = console_server.credentials()
    page.goto(console_server.endpoint + "/console/")
    for given in (
        (akid, secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        ("AKKCNOSUCHKEY0000000", secret),
    ):
        page.get_by_label("Access key id").fill(given[0])
        page.get_by_label("Secret access key").fill(given[1])
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#notice")).to_contain_text("Sign-in failed")
        expect(page.locator("#nav")).to_be_hidden()
        expect(page.get_by_label("Secret access key")).to_have_value("")


def test_keyboard_sign_in(page: Page, console_server: Server) -> None:
    akid, secret = console_server.credentials()
    page.goto(console_server.endpoint + "/console/")
    expect(page.get_by_label("Access key id")).to_be_focused()
    page.keyboard.type(akid)
    page.keyboard.press("Tab")
    page.keyboard.type(secret)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()


def test_a_principal_sees_only_what_its_policies_allow(page: Page, console_server: Server) -> None:
    made = dev_call(
        console_server.endpoint,
        console_server.credentials(),
        {"Name": "console-nobody"},
        "KeycaskAdmin.CreatePrincipal",
    )
    sign_in(page, console_server, (made["AccessKeyId"], made["SecretAccessKey"]))
    expect(page.locator("#notice")).to_contain_text("AccessDeniedException")
    expect(page.get_by_role("row", name=re.compile("console-walk"))).to_have_count(0)
    page.get_by_role("link", name="Health").click()
    expect(page.locator("#health-facts")).not_to_contain_text("Version")
    expect(page.get_by_text("The version and the nodes need keycask:ListNodes")).to_contain_text(
        "AccessDeniedException"
    )
    expect(page.locator("#nodes")).to_have_count(0)


def test_narrow_window_stays_readable(page: Page, console_server: Server, shots: Path) -> None:
    page.set_viewport_size({"width": 400, "height": 800})
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    page.screenshot(path=str(shots / "keys-narrow.png"))


# -- start-up --


def test_console_over_plain_http_off_loopback_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "keycask.cli",
            "server",
            "--dev",
            "--console",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"0.0.0.0:{free_port()}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "refusing to serve the web console over plain HTTP on 0.0.0.0" in started.stderr
    assert not (tmp_path / "data").exists()


def test_key_tabs_rotation_aliases_grants_and_crypto(
    page: Page, console_server: Server, shots: Path
) -> None:
    kms = console_server.client()
    key_id = kms.create_key(Description="tabs")["KeyMetadata"]["KeyId"]
    grant = kms.create_grant(
        KeyId=key_id,
        GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:user/admin",
        Operations=["Encrypt"],
        Name="console-grant",
    )
    sign_in(page, console_server)
    page.goto(f"{console_server.endpoint}/console/#/key/{key_id}/rotation")
    expect(page.locator("dl")).to_contain_text("disabled")
    page.get_by_label("Period (days, 90-2560)").fill("180")
    page.get_by_role("button", name="Enable rotation").click()
    expect(page.locator("dl")).to_contain_text("enabled")
    expect(page.locator("dl")).to_contain_text("180")
    page.get_by_role("button", name="Rotate now").click()
    expect(page.get_by_role("table", name="Rotation history")).to_contain_text("ON_DEMAND")
    assert kms.get_key_rotation_status(KeyId=key_id)["RotationPeriodInDays"] == 180
    page.screenshot(path=str(shots / "key-rotation.png"))
    page.get_by_role("button", name="Disable rotation").click()
    expect(page.locator("dl")).to_contain_text("disabled")

    page.get_by_role("link", name="Aliases").click()
    page.get_by_label("New alias").fill("alias/console-tabs")
    page.get_by_role("button", name="Create alias").click()
    alias_cell = page.get_by_role("cell", name="alias/console-tabs", exact=True)
    expect(alias_cell).to_be_visible()
    page.get_by_role("button", name="Delete alias/console-tabs").click()
    expect(alias_cell).to_have_count(0)

    page.get_by_role("link", name="Grants").click()
    row = page.get_by_role("row", name=re.compile("console-grant"))
    expect(row).to_contain_text(grant["GrantId"])
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("row", name=re.compile("console-grant"))).to_have_count(0)
    assert kms.list_grants(KeyId=key_id)["Grants"] == []

    page.get_by_role("link", name="General").click()
    page.get_by_label("New description").fill("renamed")
    page.get_by_role("button", name="Update description").click()
    expect(page.locator("dd", has_text="renamed")).to_have_count(1)

    # An asymmetric key from the form: the usage follows the spec.
    page.get_by_role("link", name="Keys", exact=True).click()
    page.get_by_role("link", name="Create key").click()
    page.get_by_label("Key type").select_option("asymmetric")
    page.get_by_label("Key spec").select_option("ECC_NIST_P256")
    options = page.get_by_label("Key usage").locator("option").all_text_contents()
    assert options == ["SIGN_VERIFY", "KEY_AGREEMENT"]
    page.get_by_label("Key spec").select_option("ECC_NIST_EDWARDS25519")
    assert page.get_by_label("Key usage").locator("option").all_text_contents() == ["SIGN_VERIFY"]
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#key-state")).to_have_text("Enabled")
    page.get_by_role("link", name="Cryptographic configuration").click()
    expect(page.locator("dl")).to_contain_text("ECC_NIST_EDWARDS25519")
    expect(page.locator("dl")).to_contain_text("SIGN_VERIFY")


def test_deletion_is_cancelled_and_the_key_enabled_again(
    page: Page, console_server: Server
) -> None:
    kms = console_server.client()
    key_id = kms.create_key(Description="cancel")["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    sign_in(page, console_server)
    page.goto(f"{console_server.endpoint}/console/#/key/{key_id}/general")
    expect(page.locator("#key-state")).to_have_text("PendingDeletion")
    page.get_by_role("button", name="Cancel deletion").click()
    expect(page.locator("#key-state")).to_have_text("Disabled")
    page.get_by_role("button", name="Enable key").click()
    expect(page.locator("#key-state")).to_have_text("Enabled")


def test_keys_list_pages(page: Page, tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        kms = server.client()
        made = {kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(27)}
        sign_in(page, server)
        expect(page.get_by_role("table", name="Keys, page 1")).to_be_visible()
        first = set(page.locator("tbody tr td:nth-child(2)").all_text_contents())
        assert len(first) == 25
        page.get_by_role("link", name="Next page").click()
        expect(page.get_by_role("table", name="Keys, page 2")).to_be_visible()
        second = set(page.locator("tbody tr td:nth-child(2)").all_text_contents())
        assert len(second) == 2 and first | second == made
        expect(page.get_by_role("link", name="Next page")).to_have_count(0)
        page.get_by_role("link", name="Previous page").click()
        expect(page.get_by_role("table", name="Keys, page 1")).to_be_visible()
    finally:
        server.stop()


def test_sign_in_with_a_role_session(page: Page, console_server: Server) -> None:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    dev_call(
        console_server.endpoint,
        console_server.credentials(),
        {"Name": "console-viewer", "Role": True, "TrustPolicy": json.dumps(trust)},
        "KeycaskAdmin.CreatePrincipal",
    )
    reader = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:List*", "Resource": "*"}],
    }
    dev_call(
        console_server.endpoint,
        console_server.credentials(),
        {"Name": "console-viewer", "PolicyName": "list", "PolicyDocument": json.dumps(reader)},
        "KeycaskAdmin.PutPrincipalPolicy",
    )
    akid, secret = console_server.credentials()
    sts = boto3.client(
        "sts",
        endpoint_url=console_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
    )
    session = sts.assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/console-viewer", RoleSessionName="browser"
    )["Credentials"]
    page.goto(console_server.endpoint + "/console/")
    page.get_by_label("Access key id").fill(session["AccessKeyId"])
    page.get_by_label("Secret access key").fill(session["SecretAccessKey"])
    page.get_by_label("Session token").fill(session["SessionToken"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("assumed-role/console-viewer/browser")
    # It may list, not describe: the keys are listed, each refused its details.
    expect(page.get_by_role("table", name="Keys, page 1")).to_contain_text("AccessDeniedException")
    assert page.evaluate("() => sessionStorage.length + localStorage.length") == 0


def test_who_can_on_the_key_policy_tab_and_the_access_page(
    page: Page, console_server: Server
) -> None:
    key_id = console_server.client().create_key(Description="who")["KeyMetadata"]["KeyId"]
    sign_in(page, console_server)
    page.goto(f"{console_server.endpoint}/console/#/key/{key_id}/policy")
    page.get_by_label("Action").fill("kms:Decrypt")
    page.get_by_role("button", name="Who can?").click()
    answer = page.get_by_role("table", name=re.compile("Who may kms:Decrypt"))
    expect(answer).to_contain_text(f"arn:aws:iam::{ACCOUNT}:user/admin")
    expect(answer).to_contain_text("any principal of the account")
    page.get_by_role("link", name="Access").click()
    page.get_by_label("Key", exact=True).fill(key_id)
    page.get_by_label("Action").fill("kms:Fly")
    page.get_by_role("button", name="Who can?").click()
    expect(page.locator("#notice")).to_contain_text("not a KMS action")


def test_idle_session_expires_and_wipes_the_key(page: Page, console_server: Server) -> None:
    page.clock.install()
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()
    page.clock.fast_forward("14:00")
    page.get_by_role("link", name="Health").click()  # activity: the timer starts again
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    page.clock.fast_forward("14:00")
    expect(page.locator("#nav")).to_be_visible()
    page.clock.fast_forward("01:01")
    expect(page.locator("#notice")).to_contain_text("expired after 15 minutes")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.evaluate("() => { location.hash = '#/keys'; }")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_console_on_a_production_server_over_tls(page: Page, tmp_path: Path) -> None:
    with unsealed_shamir(tmp_path / "data") as production:
        # Off unless asked for: /console/ is not served.
        status, _ = production.health("/console/")
        assert status == 400
        production.stop()
        production.start("--console")
        production.unseal_with(production.shares[:3])
        assert production.endpoint.startswith("https://")
        admin = production.init["admin"]
        response = page.goto(production.endpoint + "/console/")
        assert response is not None and response.headers["x-frame-options"] == "DENY"
        sign_in_at(page, production.endpoint, admin["access_key_id"], admin["secret_access_key"])
        page.get_by_role("link", name="Health").click()
        status = page.locator("#operator-status")
        expect(status.locator("dt", has_text="Seal type").locator("+ dd")).to_have_text("shamir")
        expect(status.locator("dt", has_text="Sealed").locator("+ dd")).to_have_text("no")


def test_every_worker_serves_the_console(workers: Server) -> None:
    for _ in range(6):
        with urllib.request.urlopen(workers.endpoint + "/console/", timeout=10) as response:
            assert response.status == 200
            assert response.headers["X-Frame-Options"] == "DENY"


def test_a_deep_link_leads_there_after_sign_in(page: Page, console_server: Server) -> None:
    key_id = console_server.client().create_key(Description="deep")["KeyMetadata"]["KeyId"]
    akid, secret = console_server.credentials()
    page.goto(f"{console_server.endpoint}/console/#/key/{key_id}/tags")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Access key id").fill(akid)
    page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Tags")).to_be_visible()
    assert page.url.endswith(f"#/key/{key_id}/tags")


def test_another_site_cannot_make_calls_for_the_signed_in_operator(
    page: Page, console_server: Server
) -> None:
    """CSRF: a page of another origin, open beside a signed-in console, can
    neither read nor make keycask calls: there is no cookie or session to
    ride on, and a cross-origin request with X-Amz-Target needs a CORS
    preflight keycask never grants."""
    kms = console_server.client()
    before = len(kms.list_keys(Limit=1000)["Keys"])
    sign_in(page, console_server)
    evil = page.context.new_page()
    evil.route(
        "http://evil.test/",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>hi</p>"),
    )
    evil.goto("http://evil.test/")
    outcome = evil.evaluate(
        """async (endpoint) => {
            try {
                await fetch(endpoint + '/', { method: 'POST', credentials: 'include',
                    headers: { 'Content-Type': 'application/x-amz-json-1.1',
                               'X-Amz-Target': 'TrentService.CreateKey' },
                    body: '{}' });
                return 'sent';
            } catch (error) { return 'blocked: ' + error.name; }
        }""",
        console_server.endpoint,
    )
    assert outcome == "blocked: TypeError"
    # A plain cross-site form post (the one request another site can send
    # without asking) carries no signature: whatever the browser does with
    # it, nothing is made.
    evil.set_content(
        f'<form method="post" action="{console_server.endpoint}/" '
        'enctype="text/plain"><input name=\'{"Description": "csrf", "x":"\' value=\'"}\'>'
        "</form>"
    )
    with evil.expect_request(console_server.endpoint + "/"):
        evil.evaluate("() => document.forms[0].submit()")
    assert len(kms.list_keys(Limit=1000)["Keys"]) == before
    evil.close()
