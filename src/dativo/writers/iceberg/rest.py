"""The REST catalog client: pyiceberg's ``RestCatalog``, with SigV4 signatures that cover the body.

pyiceberg 0.12 signs a request with a body without the ``x-amz-content-sha256`` header. AWS SigV4 servers
that follow S3's rules (SeaweedFS, measured) then refuse every write (``POST``: create a namespace or a
table, commit) with "the request signature we calculated does not match", while reads pass. Iceberg Java
and iceberg-go send the header on every signed request; :class:`SignedRestCatalog` does the same, so the
body's hash is part of the signature. Imported only for REST catalogs (it loads pyiceberg's HTTP stack).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pyiceberg.catalog.rest import RestCatalog
from requests import PreparedRequest, Response, Session
from requests.adapters import BaseAdapter

CONTENT_SHA256 = "x-amz-content-sha256"


class SignedRestCatalog(RestCatalog):
    """A ``RestCatalog`` whose SigV4 signature (``rest.sigv4-enabled``) also covers the request body."""

    def _init_sigv4(self, session: Session) -> None:
        super()._init_sigv4(session)
        session.mount(self.uri, _HashedBody(session.get_adapter(self.uri)))


class _HashedBody(BaseAdapter):
    """Puts the body's SHA-256 into ``x-amz-content-sha256``, then hands the request to the signer."""

    def __init__(self, signer: BaseAdapter) -> None:
        super().__init__()
        self._signer = signer

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        body = request.body
        if body:  # pyiceberg sets the empty body's hash itself
            data = body.encode("utf-8") if isinstance(body, str) else body
            if isinstance(data, bytes):
                request.headers[CONTENT_SHA256] = hashlib.sha256(data).hexdigest()
        return self._signer.send(request, **kwargs)

    def close(self) -> None:
        self._signer.close()


__all__ = ["SignedRestCatalog"]
