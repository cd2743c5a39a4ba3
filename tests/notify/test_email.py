"""Email through a real SMTP server (aiosmtpd) on loopback: STARTTLS + AUTH, and implicit TLS."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import subprocess
from collections.abc import Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from klaxon.notify import MemoryStatusSink

from .conftest import NS, channel, notification

USER, PASSWORD = "alerts-user", "smtp-password-secret-77cc"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp(cert: tuple[Path, Path], request: pytest.FixtureRequest) -> Iterator[tuple[Inbox, int]]:
    implicit = getattr(request, "param", False)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, cert))
    inbox = Inbox()
    port = _free_port()
    kw: dict[str, Any] = {"ssl_context": ctx} if implicit else {"tls_context": ctx, "require_starttls": True}
    # aiosmtpd only recognises STARTTLS as TLS for auth_require_tls; implicit TLS is TLS from byte one
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=not implicit,
        **kw,
    )
    controller.start()
    yield inbox, port
    controller.stop()


def client_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def email_channel(port: int, security: str) -> Any:
    return channel(
        {
            "type": "email",
            "email": {
                "host": "127.0.0.1",
                "port": port,
                "security": security,
                "from": "klaxon@example.com",
                "to": ["ops@example.com", "sre@example.com"],
                "username": {"name": "creds", "key": "smtp-user"},
                "password": {"name": "creds", "key": "smtp-pass"},
            },
            "templates": {
                "title": "[{{ status | upper }}] {{ rule }}",
                "body": "{{ rule }} is {{ state }}: {{ annotations.summary }} (key {{ dedup_key }})",
            },
        }
    )


@pytest.mark.parametrize("smtp", [False, True], ids=["starttls", "implicit-tls"], indirect=True)
async def test_email_is_received_with_auth(
    make_notifier: Any, smtp: tuple[Inbox, int], cert: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    inbox, port = smtp
    security = "tls" if "implicit" in request.node.name else "starttls"
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink, ssl_context=client_tls(cert))
    await notifier.set_channel(NS, "hook", email_channel(port, security))
    await notifier.handle(notification())
    await notifier.wait_idle(10)
    assert inbox.logins == [(USER.encode(), PASSWORD.encode())]
    [env] = inbox.envelopes
    assert env.mail_from == "klaxon@example.com"
    assert env.rcpt_tos == ["ops@example.com", "sre@example.com"]
    assert env.content is not None
    raw = env.content if isinstance(env.content, bytes) else env.content.encode()
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert msg["Subject"] == "[FIRING] api-latency"
    assert msg["From"] == "klaxon@example.com" and msg["To"] == "ops@example.com, sre@example.com"
    assert msg["Message-ID"].startswith("<") and msg["X-Klaxon-Idempotency-Key"] in msg["Message-ID"]
    body = msg.get_body(("plain",))
    assert body is not None
    assert (
        body.get_content().strip() == "api-latency is Firing: p99 latency above 500ms (key api-latency:svc-0)"
    )
    await asyncio.sleep(0.15)
    assert sink.channels[(NS, "hook")].delivered_count == 1


async def test_wrong_password_fails_without_retry_and_without_leaking(
    make_notifier: Any,
    smtp: tuple[Inbox, int],
    cert: tuple[Path, Path],
    secrets: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, port = smtp
    secrets.secrets[(NS, "creds")]["smtp-pass"] = "wrong-password-secret-88dd"
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink, ssl_context=client_tls(cert))
    with caplog.at_level("DEBUG"):
        await notifier.set_channel(NS, "hook", email_channel(port, "starttls"))
        await notifier.handle(notification())
        await notifier.wait_idle(10)
        await asyncio.sleep(0.15)
    assert inbox.logins and not inbox.envelopes
    st = sink.channels[(NS, "hook")]
    assert (
        st.failed_count == 1 and st.last_delivery is not None and "authentication" in st.last_delivery.message
    )
    everything = caplog.text + repr(sink.channels) + repr(sink.events) + repr(sink.rules)
    assert "wrong-password-secret-88dd" not in everything and "authentication failed" in caplog.text


async def test_guarded_email_connects_to_the_vetted_address_not_a_second_lookup(monkeypatch: Any) -> None:
    """DNS rebinding: the guard resolves and checks the name once; the SMTP connection goes to that
    address. The name here resolves only through the guard's lookup (the event loop's
    getaddrinfo), so a second lookup by smtplib would fail."""
    from email.message import EmailMessage

    from klaxon.notify.drivers import SmtpJob, send_email

    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    looked_up: list[str] = []

    async def only_we_know(host: Any, *args: Any, **kw: Any) -> Any:
        looked_up.append(str(host))
        return await real("127.0.0.1" if host == "mail.klaxon.test" else host, *args, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", only_we_know)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "klaxon@example.com", "ops@example.com", "pinned"
    msg.set_content("hello")
    job = SmtpJob("mail.klaxon.test", port, "none", None, None, msg)
    try:
        assert await send_email(job, 5.0, ssl.create_default_context(), guard=True) == "accepted by SMTP server"
        with pytest.raises(Exception, match="SMTP connection failed"):  # unguarded: smtplib resolves the name
            await send_email(job, 5.0, ssl.create_default_context(), guard=False)
    finally:
        controller.stop()
    assert looked_up == ["mail.klaxon.test"] and len(inbox.envelopes) == 1


async def test_guarded_email_never_connects_when_the_check_could_not_resolve(monkeypatch: Any) -> None:
    """A failed lookup during the check is not a pass: smtplib's own (unchecked) lookup could be
    answered with a refused address the second time."""
    from email.message import EmailMessage

    from klaxon.notify.drivers import DeliveryError, SmtpJob, send_email

    loop = asyncio.get_running_loop()

    async def flaky(host: Any, *args: Any, **kw: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")

    connects: list[Any] = []

    def connect(*args: Any, **kw: Any) -> Any:
        connects.append(args)
        raise OSError("must not connect")

    monkeypatch.setattr(loop, "getaddrinfo", flaky)
    monkeypatch.setattr(socket, "create_connection", connect)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "klaxon@example.com", "ops@example.com", "x"
    msg.set_content("x")
    job = SmtpJob("mail.klaxon.test", 25, "none", None, None, msg)
    with pytest.raises(DeliveryError, match="did not resolve") as err:
        await send_email(job, 5.0, ssl.create_default_context(), guard=True)
    assert err.value.retryable and connects == []
