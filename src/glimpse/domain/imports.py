"""The vocabulary of interoperable import: its methods and one parsed import request.

An :class:`ImportRequest` is what ``POST /v2/images/{id}/import`` asked for, checked once with
Glance's messages. The task created for it keeps :meth:`ImportRequest.to_dict` as ``import_req``
in its input (the body's own shape, so a task reads the same as Glance's), and the runner reads it
back with :meth:`ImportRequest.from_dict`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from glimpse.domain.images import is_uuid
from glimpse.errors import InvalidInput

__all__ = [
    "ALL_STORES_CONFLICT",
    "DIGEST_LENGTHS",
    "GLANCE_INTERFACES",
    "HTTP_DIGEST_ALGORITHMS",
    "RETRY_FAILED",
    "ExpectedDigest",
    "ImportMethod",
    "ImportRequest",
    "parse_digest_header",
]

#: The digests a client may give in ``validation_data``: algorithm → length of its hex digest.
DIGEST_LENGTHS: Mapping[str, int] = {
    "md5": 32,
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "sha3_256": 64,
    "sha3_512": 128,
    "blake2b": 128,
}
_HEX = frozenset("0123456789abcdef")
#: The algorithms of RFC 9530's registry that are not deprecated, with their hashlib names.
HTTP_DIGEST_ALGORITHMS: Mapping[str, str] = {"sha-256": "sha256", "sha-512": "sha512"}
_DIGEST_MEMBER = re.compile(r"^\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*$")


def parse_digest_header(name: str, value: str) -> list[ExpectedDigest]:
    """The digests of a ``Content-Digest`` or ``Repr-Digest`` header (RFC 9530: a dictionary of
    algorithm = :base64:), those of unsupported algorithms left out; 400 when it is malformed or
    names no supported algorithm."""
    example = f"{name}: sha-256=:<base64 of the 32-byte SHA-256 digest>:"
    digests: list[ExpectedDigest] = []
    for member in value.split(","):
        match = _DIGEST_MEMBER.match(member)
        if match is None:
            raise InvalidInput(f"The {name} header {value!r} is not valid (RFC 9530); send e.g. {example}.")
        algorithm = HTTP_DIGEST_ALGORITHMS.get(match[1])
        if algorithm is None:
            continue
        try:
            raw = base64.b64decode(match[2], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"The {name} header's {match[1]} value is not base64; send e.g. {example}."
            ) from None
        if len(raw) * 2 != DIGEST_LENGTHS[algorithm]:
            raise InvalidInput(
                f"The {name} header's {match[1]} value has {len(raw)} bytes, not a {match[1]} digest."
            )
        digests.append(ExpectedDigest(algorithm=algorithm, value=raw.hex()))
    if not digests:
        raise InvalidInput(
            f"The {name} header names no supported algorithm; use {' or '.join(HTTP_DIGEST_ALGORITHMS)}."
        )
    return digests


#: The catalog interfaces a glance-download may name (``glance_service_interface``).
GLANCE_INTERFACES = ("public", "internal", "admin")

ALL_STORES_CONFLICT = "All_stores parameter can't be used with x-image-meta-store header or stores parameter"
#: ``"stores": "failed"`` (a Glimpse addition): the stores of the image's ``os_glance_failed_import``.
RETRY_FAILED = "failed"


class ImportMethod(enum.StrEnum):
    GLANCE_DIRECT = "glance-direct"
    WEB_DOWNLOAD = "web-download"
    COPY_IMAGE = "copy-image"
    #: The image and its data come from another region's Glance (or Glimpse), through the
    #: Keystone catalog of the caller's token.
    GLANCE_DOWNLOAD = "glance-download"

    @property
    def brings_data(self) -> bool:
        """Whether the method fills a queued image with new data (through staging) and activates it;
        copy-image instead copies an active image's data to more stores."""
        return self is not ImportMethod.COPY_IMAGE

    @classmethod
    def parse(cls, value: object) -> ImportMethod | None:
        """The method called ``value``, or None for anything else."""
        return cls(value) if isinstance(value, str) and value in cls._value2member_map_ else None


@dataclass(frozen=True, slots=True)
class ExpectedDigest:
    """A digest the client expects the imported data to have (``validation_data``)."""

    algorithm: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"os_hash_algo": self.algorithm, "os_hash_value": self.value}

    @classmethod
    def parse(cls, given: object) -> ExpectedDigest:
        """``{"os_hash_algo": "sha256", "os_hash_value": "<hex>"}``, checked (400 otherwise)."""
        example = 'e.g. {"os_hash_algo": "sha256", "os_hash_value": "<64 hex digits>"}'
        if not isinstance(given, Mapping) or set(given) != {"os_hash_algo", "os_hash_value"}:
            raise InvalidInput(
                f"'validation_data' must be an object with exactly os_hash_algo and os_hash_value, {example}."
            )
        algorithm, value = given["os_hash_algo"], given["os_hash_value"]
        if not isinstance(algorithm, str) or algorithm not in DIGEST_LENGTHS:
            raise InvalidInput(
                f"validation_data: os_hash_algo {algorithm!r} is not supported; use one of "
                f"{', '.join(DIGEST_LENGTHS)}."
            )
        length = DIGEST_LENGTHS[algorithm]
        if not isinstance(value, str) or len(value) != length or not set(value.lower()) <= _HEX:
            raise InvalidInput(
                f"validation_data: os_hash_value must be the {algorithm} digest of the data as "
                f"{length} hexadecimal digits."
            )
        return cls(algorithm=algorithm, value=value.lower())


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """One import request: the method, its source and the target stores as the caller gave them.

    ``stores`` is None when the body named none (the ``X-Image-Meta-Store`` header or the default
    store decides then), or asked for ``"stores": "failed"`` (``retry_failed``: the stores the
    image's ``os_glance_failed_import`` lists); which stores an import really targets is the
    service's decision.
    ``explicit`` names the optional flags the body set itself, so that :meth:`to_dict` gives back
    the body as it was sent (a task shows its request as Glance's does).
    """

    method: ImportMethod
    uri: str | None = None
    stores: tuple[str, ...] | None = None
    all_stores: bool = False
    all_stores_must_succeed: bool = True
    explicit: frozenset[str] = frozenset()
    #: The digest the data must have (web-download and glance-direct), checked before any store
    #: keeps it.
    validation_data: ExpectedDigest | None = None
    #: ``"stores": "failed"``: retry exactly the stores the last import or copy failed to write.
    retry_failed: bool = False
    #: ``"deadline"`` (a Glimpse addition): seconds after the request within which the task must
    #: end; past them it fails and undoes its work. None: no deadline of the caller's own.
    deadline: int | None = None
    #: glance-download: the image to fetch, the region whose ``image`` endpoint serves it, and the
    #: catalog interface of that endpoint.
    glance_image_id: str | None = None
    glance_region: str | None = None
    glance_service_interface: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The request as an import body (Glance's ``import_req``)."""
        method: dict[str, Any] = {"name": str(self.method)}
        if self.uri is not None:
            method["uri"] = self.uri
        if self.method is ImportMethod.GLANCE_DOWNLOAD:
            method["glance_image_id"] = self.glance_image_id
            method["glance_region"] = self.glance_region
            method["glance_service_interface"] = self.glance_service_interface
        body: dict[str, Any] = {"method": method}
        if self.stores is not None:
            body["stores"] = list(self.stores)
        elif self.retry_failed:
            body["stores"] = RETRY_FAILED
        if self.all_stores or "all_stores" in self.explicit:
            body["all_stores"] = self.all_stores
        if not self.all_stores_must_succeed or "all_stores_must_succeed" in self.explicit:
            body["all_stores_must_succeed"] = self.all_stores_must_succeed
        if self.validation_data is not None:
            body["validation_data"] = self.validation_data.to_dict()
        if self.deadline is not None:
            body["deadline"] = self.deadline
        return body

    @classmethod
    def from_dict(cls, body: object, enabled: Collection[str] | None = None) -> ImportRequest:
        """Parse an import body with Glance's checks, in its order and with its messages (all 400).

        ``enabled`` limits the methods accepted (``enabled_import_methods``); None accepts all.
        """
        if body is None:
            raise InvalidInput("Body expected in request.")
        if not isinstance(body, Mapping):
            raise InvalidInput("The import request body must be a JSON object with a 'method' field.")
        method = body.get("method")
        if method is None:
            raise InvalidInput("Import request requires a 'method' field.")
        if not isinstance(method, Mapping) or "name" not in method:
            raise InvalidInput("Import request requires a 'name' field.")
        name = method["name"]
        parsed = ImportMethod.parse(name)
        if parsed is None or (enabled is not None and parsed not in enabled):
            raise InvalidInput(f"Unknown import method name '{name}'.")
        all_stores_must_succeed = body.get("all_stores_must_succeed", True)
        if not isinstance(all_stores_must_succeed, bool):
            raise InvalidInput("'all_stores_must_succeed' must be boolean value only")
        all_stores = body.get("all_stores", False)
        if not isinstance(all_stores, bool):
            raise InvalidInput("'all_stores' must be boolean value only")
        retry_failed = body.get("stores") == RETRY_FAILED
        if retry_failed and all_stores:
            raise InvalidInput(ALL_STORES_CONFLICT)
        remote = _remote_image(method) if parsed is ImportMethod.GLANCE_DOWNLOAD else {}
        return cls(
            method=parsed,
            uri=_uri(parsed, method.get("uri")),
            **remote,
            stores=None if retry_failed else _stores(body, all_stores),
            retry_failed=retry_failed,
            all_stores=all_stores,
            all_stores_must_succeed=all_stores_must_succeed,
            explicit=frozenset(_FLAGS.intersection(body)),
            validation_data=_validation_data(parsed, body),
            deadline=_deadline(body),
        )


_FLAGS = frozenset({"all_stores", "all_stores_must_succeed"})


def _uri(method: ImportMethod, uri: object) -> str | None:
    if method is not ImportMethod.WEB_DOWNLOAD:
        return None
    if not isinstance(uri, str):
        raise InvalidInput(
            f"URI for web-download does not pass filtering: {uri} (the request needs the URL to "
            "import from as a string in method.uri)."
        )
    return uri


def _deadline(body: Mapping[str, Any]) -> int | None:
    if "deadline" not in body:
        return None
    value = body["deadline"]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(
            "'deadline' must be a positive integer: the seconds within which the import must end "
            f"(e.g. 3600), or left out for no deadline; got {value!r}."
        )
    return value


def _remote_image(method: Mapping[str, Any]) -> dict[str, str]:
    """glance-download's fields: the remote image id (a UUID), its region and the catalog interface
    (``public`` when not given), all 400 when missing or malformed."""
    example = (
        'e.g. {"method": {"name": "glance-download", "glance_image_id": "<id of the image there>", '
        '"glance_region": "RegionTwo", "glance_service_interface": "public"}}'
    )
    for name in ("glance_region", "glance_image_id"):
        if name not in method:
            raise InvalidInput(f"Import request requires a '{name}' field for glance-download, {example}.")
    region, image_id = method["glance_region"], method["glance_image_id"]
    if not isinstance(region, str) or not region.strip():
        raise InvalidInput(f"'glance_region' must name a region of the service catalog, {example}.")
    if not isinstance(image_id, str) or not is_uuid(image_id):
        raise InvalidInput(
            f"Remote image id does not look like a UUID: {image_id!r}; 'glance_image_id' is the id "
            "of the image in the other region."
        )
    interface = method.get("glance_service_interface", "public")
    if interface is None:
        interface = "public"
    if not isinstance(interface, str) or not interface.strip():
        raise InvalidInput(
            f"'glance_service_interface' must be a catalog interface ({', '.join(GLANCE_INTERFACES)})."
        )
    return {"glance_image_id": image_id, "glance_region": region, "glance_service_interface": interface}


def _validation_data(method: ImportMethod, body: Mapping[str, Any]) -> ExpectedDigest | None:
    if "validation_data" not in body:
        return None
    if not method.brings_data:
        raise InvalidInput(
            "'validation_data' is for the methods that bring new data (glance-direct, web-download, "
            "glance-download); "
            "copy-image already checks the copied data against the image's own checksums."
        )
    return ExpectedDigest.parse(body["validation_data"])


def _stores(body: Mapping[str, Any], all_stores: bool) -> tuple[str, ...] | None:
    if "stores" not in body:
        return None
    if all_stores:
        raise InvalidInput(ALL_STORES_CONFLICT)
    given = body["stores"]
    if not isinstance(given, list) or not given or not all(isinstance(s, str) for s in given):
        raise InvalidInput(
            '\'stores\' must be a non-empty list of store ids, e.g. ["fast", "cheap"], or "failed" '
            "for the stores the last import or copy failed to write; GET /v2/info/stores lists them."
        )
    return tuple(given)
