"""The ``auth`` serializer: message bodies signed with a private key, checked against a store.

Wire format (Celery's ``SecureSerializer``, byte for byte)::

    content_type:     application/data
    content_encoding: utf-8
    body:             base64( b64(signer_id) SEP b64(signature) SEP content_type SEP
                              content_encoding SEP inner_body )        SEP = b"\\x00\\x01"

``inner_body`` is the message serialized with the inner serializer (json by default) and
``signature`` signs exactly those bytes, so the receiver checks the signature before
decoding anything. Only the body is signed: headers and properties (task name, id, routing)
are not, as in Celery.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import serialization
from ..exceptions import ContentDisallowed, SecurityError
from .certificate import Certificate, CertStore, PrivateKey, get_digest_algorithm

__all__ = ["SEPARATOR", "SecureSerializer", "SignedPayload", "register_auth"]

SEPARATOR = b"\x00\x01"


@dataclass(frozen=True, slots=True)
class SignedPayload:
    signer: str
    signature: bytes
    content_type: str
    content_encoding: str
    body: bytes


def pack(payload: SignedPayload) -> bytes:
    fields = SEPARATOR.join(
        [
            base64.b64encode(payload.signer.encode("utf-8")),
            base64.b64encode(payload.signature),
            payload.content_type.encode("utf-8"),
            payload.content_encoding.encode("utf-8"),
            payload.body,
        ]
    )
    return base64.b64encode(fields)


def unpack(data: bytes | str) -> SignedPayload:
    raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    try:
        parts = base64.b64decode(raw).split(SEPARATOR, 4)
        if len(parts) != 5:
            raise ValueError(f"expected 5 fields, got {len(parts)}")
        return SignedPayload(
            signer=base64.b64decode(parts[0]).decode("utf-8"),
            signature=base64.b64decode(parts[1]),
            content_type=parts[2].decode("utf-8"),
            content_encoding=parts[3].decode("utf-8"),
            body=parts[4],
        )
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise SecurityError(f"not a signed message: {exc}") from exc


class SecureSerializer:
    """Signs with ``key``/``cert``; verifies against ``cert_store``.

    ``accept`` limits what a verified body may be decoded as (serializer names or content
    types); by default only ``serializer`` itself, so a signed pickle is never unpickled
    unless it was asked for.
    """

    def __init__(
        self,
        key: PrivateKey | None = None,
        cert: Certificate | None = None,
        cert_store: CertStore | None = None,
        digest: str = "sha256",
        serializer: str = "json",
        accept: Iterable[str] | None = None,
    ) -> None:
        if serializer == "auth":
            raise SecurityError("the auth serializer can't wrap itself: pick e.g. serializer='json'")
        self._key = key
        self._cert = cert
        self._cert_store = cert_store
        self._digest = get_digest_algorithm(digest)
        self._serializer = serializer
        inner = [serializer, *(accept or ())]
        self._accept = serialization.prepare_accept_content(inner) - {"application/data"}

    def serialize(self, data: Any) -> bytes:
        if self._key is None or self._cert is None:
            raise SecurityError("can't sign: no private key and certificate (security_key, security_certificate)")
        content_type, content_encoding, body = serialization.dumps(data, self._serializer)
        signature = self._key.sign(body, self._digest)
        return pack(SignedPayload(self._cert.get_id(), signature, content_type, content_encoding, body))

    def deserialize(self, data: bytes | str) -> Any:
        if self._cert_store is None:
            raise SecurityError("can't verify: no certificate store (security_cert_store)")
        payload = unpack(data)
        self._cert_store[payload.signer].verify(payload.body, payload.signature, self._digest)
        try:
            return serialization.loads(payload.body, payload.content_type, payload.content_encoding, self._accept)
        except ContentDisallowed as exc:
            raise SecurityError(f"signed body of a refused type: {exc}") from exc


def register_auth(
    key: str | bytes | None = None,
    key_password: str | bytes | None = None,
    cert: str | bytes | None = None,
    store: str | None = None,
    digest: str = "sha256",
    serializer: str = "json",
    accept: Iterable[str] | None = None,
) -> SecureSerializer:
    """Install the ``auth`` serializer (process-wide, as in Celery) from PEM text and a store path."""
    from .certificate import FSCertStore

    secure = SecureSerializer(
        PrivateKey(key, key_password) if key else None,
        Certificate(cert) if cert else None,
        FSCertStore(store) if store else None,
        digest,
        serializer,
        accept,
    )
    serialization.register(
        serialization.Serializer("auth", "application/data", "utf-8", secure.serialize, secure.deserialize)
    )
    return secure
