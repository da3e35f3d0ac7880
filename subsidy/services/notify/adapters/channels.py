"""Channel adapters: e-mail over SMTP (or .eml files in a directory, the
local default), webhook (signed JSON POST) and an SMS gateway (JSON POST).

Errors raised here are DeliveryError / PermanentDeliveryError whose text
never contains the address (e-mail, phone, webhook URL): SMTP server replies
and HTTP bodies may echo it, so only codes and exception types are kept.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import smtplib
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from subsidy.platform.registry import Contacts
from subsidy.services.notify.model import DeliveryError, Notification, PermanentDeliveryError

MESSAGE_ID_DOMAIN = "subsidy.songjiang.example.cn"
#: A receiver rejects a webhook whose X-Subsidy-Timestamp is further than this
#: from its own clock (docs/notify.md: verifying webhooks).
WEBHOOK_MAX_AGE_S = 300


def build_email(notification: Notification, sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = notification.subject
    message["Date"] = email.utils.formatdate(usegmt=True)
    # Derived from the notification id: a receiving system can drop a
    # duplicate from the at-least-once window by Message-ID.
    message["Message-ID"] = f"<{notification.id}@{MESSAGE_ID_DOMAIN}>"
    message["X-Subsidy-Notification-Id"] = notification.id
    message["X-Subsidy-Event-Id"] = notification.event_id
    message.set_content(notification.body, charset="utf-8", cte="base64")
    return message


class SmtpEmail:
    """``smtp://[user:pass@]host:port`` (plain), ``smtp+starttls://…`` or
    ``smtp://…?starttls=true`` (STARTTLS), ``smtps://…`` (TLS from the start)."""

    name = "email"

    def __init__(
        self, url: str, sender: str, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None, cafile: str = ""
    ):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError(
                f"unsupported SMTP URL scheme {parsed.scheme!r}: use smtp://, smtp+starttls:// or smtps://"
            )
        query = urllib.parse.parse_qs(parsed.query)
        self.tls = parsed.scheme == "smtps"
        self.starttls = parsed.scheme == "smtp+starttls" or query.get("starttls", ["false"])[0].lower() in (
            "1",
            "true",
            "yes",
        )
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (465 if self.tls else 587 if self.starttls else 25)
        self.user = urllib.parse.unquote(parsed.username or "")
        self.password = urllib.parse.unquote(parsed.password or "")
        self.sender = sender
        self.timeout = timeout
        # Certificates are verified (hostname included); a private mail relay's
        # CA comes from SUBSIDY_NOTIFY_SMTP_CAFILE. STARTTLS is never skipped:
        # a server that does not offer it fails the delivery (no downgrade).
        self.ssl_context = ssl_context or ssl.create_default_context(cafile=cafile or None)
        if not (self.tls or self.starttls) and not is_loopback(self.host):
            # Checked at start: the mail (personal data) and any credentials
            # would cross the network in clear.
            raise ValueError(
                "SUBSIDY_NOTIFY_SMTP_URL: plain smtp:// is allowed only to a loopback relay; "
                "use smtps:// or smtp+starttls:// for a remote one"
            )

    def __repr__(self) -> str:
        return f"SmtpEmail({self.host}:{self.port}, tls={self.tls}, starttls={self.starttls})"

    def address(self, contacts: Contacts) -> str:
        return contacts.email

    def send(self, notification: Notification, address: str) -> None:
        message = build_email(notification, self.sender, address)
        try:
            if self.tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.starttls:
                    client.starttls(context=self.ssl_context)
                if self.user:
                    client.login(self.user, self.password)
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            error = f"SMTP recipient refused ({', '.join(map(str, codes))})"
            raise (PermanentDeliveryError if all(500 <= c < 600 for c in codes) else DeliveryError)(error) from None
        except smtplib.SMTPResponseException as exc:
            # The server's text may quote the address: keep the code only.
            error = f"SMTP {type(exc).__name__} {exc.smtp_code}"
            raise (PermanentDeliveryError if 500 <= exc.smtp_code < 600 and exc.smtp_code != 554 else DeliveryError)(
                error
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}: {_os_error(exc)}") from None


class MailDirEmail:
    """The local default: each e-mail as ``<notification id>.eml`` in a directory."""

    name = "email"

    def __init__(self, directory: str | Path, sender: str):
        self.directory = Path(directory)
        self.sender = sender

    def address(self, contacts: Contacts) -> str:
        return contacts.email

    def send(self, notification: Notification, address: str) -> None:
        message = build_email(notification, self.sender, address)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as f:
                f.write(message.as_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / f"{notification.id}.eml")
        except OSError as exc:
            raise DeliveryError(f"mail directory: {type(exc).__name__}: {exc.strerror}") from None


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return type(exc).__name__


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is answered, never followed: following it would carry the body
    and the signature headers to wherever the receiver points (another host,
    loopback, the cluster's internal addresses)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None  # urllib then raises HTTPError(code)


# No redirects; proxies from the environment as urlopen's default opener.
_OPENER = urllib.request.build_opener(_RefuseRedirects)


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: a receiver on this machine (or pod)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _post_json(url: str, body: bytes, headers: dict[str, str], timeout: float, what: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        # no file:, ftp: or custom schemes from the registry's data
        raise PermanentDeliveryError(f"{what}: the address is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8", **headers}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:  # nosec B310 - scheme checked above
            response.read()
    except urllib.error.HTTPError as exc:
        error = f"{what}: HTTP {exc.code}"
        exc.close()
        if 300 <= exc.code < 400:
            # The Location is not quoted: it may hold the address or an internal one.
            raise PermanentDeliveryError(f"{error}: redirects are not followed") from None
        if 400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429):
            raise PermanentDeliveryError(error) from None
        raise DeliveryError(error) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(
            f"{what}: {_os_error(exc.reason) if isinstance(exc.reason, BaseException) else 'unreachable'}"
        ) from None
    except (http.client.HTTPException, OSError) as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}: {_os_error(exc)}") from None
    except ValueError:  # a malformed URL in the registry
        raise PermanentDeliveryError(f"{what}: the address is not a valid URL") from None


#: ``(host, port) -> the addresses it resolves to``, in the resolver's order.
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection (the system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """A globally routable unicast address: not private (RFC 1918, ULA), not
    loopback, link-local, shared (100.64/10), unspecified, reserved,
    documentation or multicast. An IPv6 address carrying an IPv4 one
    (IPv4-mapped, 6to4, Teredo, NAT64 64:ff9b::/96) is judged by the IPv4
    address too: ``::ffff:127.0.0.1`` is loopback."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            candidates.append(ip.sixtofour)
        if ip.teredo is not None:
            candidates.extend(ip.teredo)
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return all(c.is_global and not c.is_multicast for c in candidates)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` over a TCP connection to ``address``, an address
    ``host`` resolved to and that was checked: TLS verifies the certificate
    against ``host`` (and sends it as SNI), the Host header names ``host``.
    Nothing is resolved again, so the name cannot point elsewhere between the
    check and the connection (DNS rebinding)."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _status_error(status: int, what: str) -> DeliveryError:
    """The delivery error of a non-2xx answer (as ``_post_json``)."""
    error = f"{what}: HTTP {status}"
    if 300 <= status < 400:
        return PermanentDeliveryError(f"{error}: redirects are not followed")
    if 400 <= status < 500 and status not in (408, 409, 425, 429):
        return PermanentDeliveryError(error)
    return DeliveryError(error)


def webhook_payload(notification: Notification) -> dict[str, Any]:
    return {
        "notification_id": notification.id,
        "event_id": notification.event_id,
        "type": notification.kind,
        "credit_code": notification.credit_code,
        "subject": notification.subject,
        "text": notification.body,
        "data": notification.data,
    }


def signed_message(timestamp: str, body: bytes) -> bytes:
    """What the HMAC covers: ``<X-Subsidy-Timestamp> + "." + <raw body>``."""
    return timestamp.encode() + b"." + body


def sign(secret: str, message: bytes) -> str:
    """The legacy signature (one unnamed key): ``sha256=<hex HMAC-SHA256 of the message>``."""
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_with_key(key_id: str, secret: str, message: bytes) -> str:
    """``keyid=<key id>,sha256=<hex HMAC-SHA256 of the message>`` (docs/notify.md: verifying webhooks)."""
    return f"keyid={key_id},{sign(secret, message)}"


def parse_keys(spec: str) -> dict[str, str]:
    """``"k1=secret1,k2=secret2"`` -> {"k1": "secret1", "k2": "secret2"} (order kept)."""
    keys: dict[str, str] = {}
    for entry in (e.strip() for e in spec.replace("\n", ",").split(",") if e.strip()):
        kid, sep, value = entry.partition("=")
        kid, value = kid.strip(), value.strip()
        if not sep or not kid or not value or not all(c.isalnum() or c in "-_." for c in kid):
            raise ValueError("SUBSIDY_NOTIFY_WEBHOOK_KEYS: entries are <key id>=<secret>, key ids [A-Za-z0-9._-]")
        if kid in keys:
            raise ValueError(f"SUBSIDY_NOTIFY_WEBHOOK_KEYS: key id {kid} given twice")
        keys[kid] = value
    return keys


def verify_signature(
    header: str,
    body: bytes,
    keys: dict[str, str],
    legacy_secret: str = "",
    *,
    timestamp: str,
    now: float | None = None,
    max_age_s: float = WEBHOOK_MAX_AGE_S,
) -> bool:
    """What a receiver does (and what the tests use): reject a timestamp more
    than ``max_age_s`` from ``now`` (either way), then accept a signature of
    ``timestamp.body`` made with any listed key; ``sha256=...`` alone only
    against the legacy secret."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > max_age_s:
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    digest = fields.get("sha256", "")
    secret = keys.get(fields["keyid"]) if "keyid" in fields else legacy_secret or None
    if not secret or not digest:
        return False
    return hmac.compare_digest(sign(secret, signed_message(timestamp, body)), "sha256=" + digest)


class Webhook:
    """POST the event as JSON to the firm's webhook URL, signed with HMAC-SHA256.

    With rotating keys (``keys`` = {key id: secret}) the active key signs and
    the header names it: ``X-Subsidy-Signature: keyid=<id>,sha256=<hex>``;
    with a single legacy ``secret`` the header is ``sha256=<hex>``. The HMAC
    covers ``<timestamp>.<body>``, the timestamp (Unix seconds from ``clock``)
    sent as ``X-Subsidy-Timestamp``: a receiver rejects old ones (replays)."""

    name = "webhook"

    def __init__(
        self,
        secret: str = "",
        timeout: float = 5.0,
        keys: dict[str, str] | None = None,
        active_key_id: str = "",
        allow_http_loopback: bool = False,
        clock: Callable[[], float] = time.time,
        resolver: Resolver = resolve,
        address_allowed: Callable[[str], bool] = is_public_address,
        tls_context: ssl.SSLContext | None = None,
    ):
        keys = dict(keys or {})
        if not secret and not keys:
            raise ValueError(
                "the webhook channel needs a signing key "
                "(SUBSIDY_NOTIFY_WEBHOOK_KEYS or SUBSIDY_NOTIFY_WEBHOOK_SECRET, or their _FILE)"
            )
        if keys:
            active_key_id = active_key_id or next(iter(keys))
            if active_key_id not in keys:
                raise ValueError("SUBSIDY_NOTIFY_WEBHOOK_ACTIVE_KEY_ID names no key in SUBSIDY_NOTIFY_WEBHOOK_KEYS")
        self._secret = secret
        self._keys = keys
        self.active_key_id = active_key_id if keys else ""
        self.timeout = timeout
        # https:// only; plain http:// to a loopback receiver when allowed
        # (SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK: local runs and tests).
        self.allow_http_loopback = allow_http_loopback
        self.clock = clock
        # https:// hosts are resolved once, every address checked (public
        # only), and the connection made to a checked address (no rebinding).
        self.resolver = resolver
        self.address_allowed = address_allowed
        self.tls_context = tls_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"Webhook(<secrets redacted>, active_key_id={self.active_key_id!r})"

    def address(self, contacts: Contacts) -> str:
        return contacts.webhook_url

    def signature(self, body: bytes, timestamp: str) -> str:
        message = signed_message(timestamp, body)
        if self._keys:
            return sign_with_key(self.active_key_id, self._keys[self.active_key_id], message)
        return sign(self._secret, message)

    def check_address(self, address: str) -> None:
        """Raise PermanentDeliveryError unless ``address`` may receive a webhook
        (the reason names no part of the address)."""
        try:
            parts = urllib.parse.urlsplit(address)
            scheme, host = parts.scheme.lower(), parts.hostname
        except ValueError:
            raise PermanentDeliveryError("webhook: the address is not a valid URL") from None
        if scheme == "https":
            return
        if scheme == "http" and is_loopback(host):
            if self.allow_http_loopback:
                return
            raise PermanentDeliveryError(
                "webhook: plain http:// to a loopback receiver is off "
                "(SUBSIDY_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK): the address must be https://"
            )
        raise PermanentDeliveryError(
            "webhook: the address is not an https:// URL (the payload and its signature are never sent in clear)"
        )

    def send(self, notification: Notification, address: str) -> None:
        self.check_address(address)
        body = json.dumps(webhook_payload(notification), ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "X-Subsidy-Timestamp": timestamp,
            "X-Subsidy-Signature": self.signature(body, timestamp),
            "Idempotency-Key": notification.id,
            "X-Subsidy-Event-Id": notification.event_id,
        }
        if urllib.parse.urlsplit(address).scheme.lower() == "https":
            self._post_https(address, body, headers)
        else:  # plain http:// to loopback, allowed by check_address
            _post_json(address, body, headers, self.timeout, "webhook")

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to: every address ``host`` resolves to,
        each allowed; else PermanentDeliveryError (nothing sent). The reason
        names neither the host nor an address (the URL is personal data)."""
        try:
            found = self.resolver(host, port)
        except UnicodeError:
            raise PermanentDeliveryError("webhook: the host name is not a valid name") from None
        except OSError as exc:  # socket.gaierror included: DNS may come back
            raise DeliveryError(f"webhook: the host name did not resolve: {_os_error(exc)}") from None
        if not found:
            raise DeliveryError("webhook: the host name resolved to no address")
        if not all(self.address_allowed(a) for a in found):
            raise PermanentDeliveryError(
                "webhook: the host resolves to a non-public address (private, loopback, link-local or reserved): "
                "not called"
            )
        return found

    def _post_https(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            host, port = parts.hostname, parts.port or 443
        except ValueError:
            raise PermanentDeliveryError("webhook: the address is not a valid URL") from None
        if not host:
            raise PermanentDeliveryError("webhook: the address is not a valid URL")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        last: BaseException | None = None
        for address in self.addresses(host, port):
            connection = _PinnedHTTPSConnection(host, port, address, self.tls_context, self.timeout)
            try:
                try:
                    connection.connect()
                except ssl.SSLCertVerificationError:
                    raise PermanentDeliveryError("webhook: the receiver's certificate does not verify") from None
                except OSError as exc:
                    last = exc
                    continue  # the next checked address
                connection.request(
                    "POST", target, body=body, headers={"Content-Type": "application/json; charset=utf-8", **headers}
                )
                response = connection.getresponse()
                response.read()
                if not 200 <= response.status < 300:
                    raise _status_error(response.status, "webhook")
                return
            except (http.client.HTTPException, OSError) as exc:
                raise DeliveryError(f"webhook: {type(exc).__name__}: {_os_error(exc)}") from None
            finally:
                connection.close()
        raise DeliveryError(f"webhook: {_os_error(last) if last else 'unreachable'}")


class SmsGateway:
    """POST ``{"id", "to", "text"}`` as JSON to the SMS gateway."""

    name = "sms"

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout

    def address(self, contacts: Contacts) -> str:
        return contacts.phone

    def send(self, notification: Notification, address: str) -> None:
        body = json.dumps({"id": notification.id, "to": address, "text": notification.sms}, ensure_ascii=False).encode()
        _post_json(self.url, body, {"Idempotency-Key": notification.id}, self.timeout, "sms gateway")
