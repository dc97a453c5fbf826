"""Message signing: Celery's ``auth`` serializer and ``app.setup_security()``.

Needs the ``cryptography`` library (``pip install 'celeriac[auth]'``)::

    app.conf.update(
        task_serializer="auth",
        accept_content=["auth"],
        result_accept_content=["json"],
        security_key="/etc/ssl/private/worker.key",
        security_certificate="/etc/ssl/certs/worker.pem",
        security_cert_store="/etc/ssl/certs/trusted/*.pem",
    )
    app.setup_security()

Like Celery's, the serializer is registered process-wide: every app in the process signs
with the same key and trusts the same store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..exceptions import ImproperlyConfigured

try:
    import cryptography  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImproperlyConfigured(
        "The auth serializer needs the cryptography library: pip install 'celeriac[auth]'"
    ) from None

from .certificate import Certificate, CertStore, FSCertStore, PrivateKey
from .serialization import SecureSerializer, register_auth

if TYPE_CHECKING:
    from ..app import Celery

__all__ = [
    "CertStore",
    "Certificate",
    "FSCertStore",
    "PrivateKey",
    "SecureSerializer",
    "register_auth",
    "setup_security",
]

SETTING_MISSING = """\
Signing needs a serializer that signs and a worker that accepts only signed messages:
    * task_serializer = 'auth'
    * accept_content = ['auth']
(got task_serializer={serializer!r}, accept_content={accept!r})"""

SECURITY_SETTING_MISSING = """\
The auth serializer needs all three of
    * security_key          (the PEM private key this process signs with)
    * security_certificate  (its PEM certificate)
    * security_cert_store   (a directory or glob of the PEM certificates it trusts)"""


def setup_security(
    allowed_serializers: Iterable[str] | None = None,
    key: str | None = None,
    key_password: str | bytes | None = None,
    cert: str | None = None,
    store: str | None = None,
    digest: str | None = None,
    serializer: str = "json",
    app: Celery | None = None,
) -> SecureSerializer:
    """Register the ``auth`` serializer from files named by the arguments or the ``security_*`` settings.

    ``allowed_serializers`` are the serializers (besides ``serializer``) a verified body may use.
    """
    if app is None:
        from .._state import get_current_app

        app = get_current_app()
    conf = app.conf
    accept = list(conf.accept_content or ())
    if conf.task_serializer != "auth" or accept != ["auth"]:
        raise ImproperlyConfigured(SETTING_MISSING.format(serializer=conf.task_serializer, accept=accept))
    key = key or conf.security_key
    key_password = key_password or conf.security_key_password
    cert = cert or conf.security_certificate
    store = store or conf.security_cert_store
    digest = digest or conf.security_digest or "sha256"
    if not (key and cert and store):
        raise ImproperlyConfigured(SECURITY_SETTING_MISSING)
    with open(os.fspath(key), "rb") as kf, open(os.fspath(cert), "rb") as cf:
        return register_auth(
            kf.read(), key_password, cf.read(), os.fspath(store), digest, serializer, allowed_serializers
        )
