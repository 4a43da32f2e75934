"""The server's one exception tree.

Every error the domain, the services, the stores, the database layer or the task runner raises on
purpose is a :class:`GlimpseError` defined here. The HTTP layer maps each class to a status code in
one table (``glimpse.api.errors.STATUS_TABLE``); nothing below the HTTP layer knows about status
codes. ``tests/unit/test_error_table.py`` checks that this tree names every class, with its parent
and the status the table gives it.

::

    GlimpseError                   anything else Glimpse raises on purpose (500)
    ├── InvalidInput               bad request data (400)
    │   ├── UnsupportedMediaType   the body's media type is not accepted (415)
    │   │   └── FormatMismatch     the data is not in the image's disk_format (415)
    │   ├── UnsafeImage            the data fails a safety check of its format; carries ``check`` (400)
    │   ├── DigestMismatch         the data does not have the digest the client gave (400)
    │   └── KeyReused              an Idempotency-Key sent again with another request (422)
    ├── Unauthenticated            no token, or one Keystone refused; carries ``www_authenticate`` (401)
    ├── IdentityUnavailable        Keystone cannot be reached to validate a token (503)
    │   └── LimitsUnavailable      Keystone cannot be reached to read a project's limits (503)
    ├── NotFound                   missing or invisible resource (404)
    ├── Forbidden                  policy says no (403)
    │   └── ReservedAttribute      os_glance_* and read-only attributes (403)
    ├── Conflict                   the resource is not in a state that allows this (409)
    │   ├── ImageLocked            another import holds the image's lock; carries ``lock`` (409)
    │   ├── UnknownStore           a store id that is not configured (409)
    │   ├── InvalidTransition      a status machine refused a transition (409)
    │   ├── Duplicate              an id / member / tag already exists (409)
    │   └── RequestInFlight        its key's first request still runs; carries ``retry_after`` (409)
    ├── ImageGone                  the image was deleted while its data was uploaded (410)
    ├── RangeNotSatisfiable        a Range outside the data; carries ``size`` (416)
    ├── TooLarge                   size cap, storage quota or a count limit exceeded (413)
    │   └── OverQuota              a project quota (unified limit) refused; carries ``resource`` (413)
    ├── MethodNotAllowed           (405)
    ├── StorageError               a store failed (503)
    │   ├── StoreNotFound          no object at that location (404)
    │   ├── StoreFull              no space left (413)
    │   ├── StoreMismatch          a store kept other bytes than a write gave it (503)
    │   └── DatabaseUnavailable    the database cannot be reached or stays locked (503)
    ├── ConfigError                the configuration cannot be used; stops the server (500)
    ├── PolicyError                a policy rule or file cannot be used (500)
    ├── DownloadFailed             a web-download did not bring the whole image; a task message (500)
    └── FlowFailed                 an import or copy failed; a task message (500)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class GlimpseError(Exception):
    """Base of every error Glimpse raises on purpose; ``message`` is shown to the user."""

    default_message = "An unexpected error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(GlimpseError):
    default_message = "The request is not valid."


class UnsupportedMediaType(InvalidInput):
    default_message = "The media type of the request body is not supported."


class Unauthenticated(GlimpseError):
    """The request needs a valid Keystone token; ``www_authenticate`` is where to get one."""

    default_message = "The request you have made requires authentication."

    def __init__(self, message: str | None = None, www_authenticate: str | None = None) -> None:
        super().__init__(message)
        self.www_authenticate = www_authenticate


class IdentityUnavailable(GlimpseError):
    default_message = "The identity service (Keystone) cannot be reached to validate the token."


class FormatMismatch(UnsupportedMediaType):
    """The bytes given for an image are not in its ``disk_format`` (``require_image_format_match``)."""

    default_message = "The image data does not match the image's disk_format."


class UnsafeImage(InvalidInput):
    """The bytes given for an image fail one of the safety checks of their format.

    ``check`` names the failed check as ``<format>/<check>`` (for example ``qcow2/backing_file``).
    """

    default_message = "The image data failed a safety check."

    def __init__(self, message: str | None = None, *, check: str = "") -> None:
        super().__init__(message)
        self.check = check


class DigestMismatch(InvalidInput):
    """The bytes given for an image do not have the digest the client said they have."""

    default_message = "The image data does not have the digest the request gave."


class KeyReused(InvalidInput):
    """An ``Idempotency-Key`` the project already used for another request (method, path or body)."""

    default_message = "This Idempotency-Key was already used for another request."


class LimitsUnavailable(IdentityUnavailable):
    default_message = "The identity service (Keystone) cannot be reached to read the project's limits."


class NotFound(GlimpseError):
    default_message = "The resource could not be found."


class Forbidden(GlimpseError):
    default_message = "You are not authorized to complete this action."


class ReservedAttribute(Forbidden):
    pass


class Conflict(GlimpseError):
    default_message = "The request conflicts with the current state of the resource."


class ImageLocked(Conflict):
    """Another import holds the image's lock; ``lock`` says which task, whose, and until when.

    The error body carries ``lock`` as an extra JSON field (see :attr:`extra_fields`).
    """

    def __init__(self, message: str, lock: dict[str, object]) -> None:
        super().__init__(message)
        self.lock = lock

    @property
    def extra_fields(self) -> Mapping[str, object]:
        return {"lock": self.lock}


class UnknownStore(Conflict):
    """A store id that is not one of the configured stores."""

    def __init__(self, store_id: str, known: Iterable[str]) -> None:
        self.store_id = store_id
        super().__init__(f"Unknown store '{store_id}'; known stores are: {', '.join(known)}")


class InvalidTransition(Conflict):
    pass


class Duplicate(Conflict):
    pass


class RequestInFlight(Conflict):
    """The first request sent with this ``Idempotency-Key`` is still being processed; ``retry_after``
    is the number of seconds to wait before retrying (sent as ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def extra_fields(self) -> Mapping[str, object]:
        return {"retry_after": self.retry_after}


class ImageGone(GlimpseError):
    default_message = "The image was deleted while its data was being uploaded."


class RangeNotSatisfiable(GlimpseError):
    default_message = "Requested range not satisfiable."

    def __init__(self, size: int, message: str | None = None) -> None:
        super().__init__(message)
        self.size = size


class TooLarge(GlimpseError):
    default_message = "The request is larger than this service accepts."


class OverQuota(TooLarge):
    """A project quota refused a request: ``resource`` is its name (``image_size_total``...)."""

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(message)
        self.resource = resource


class MethodNotAllowed(GlimpseError):
    default_message = "The method is not allowed for this resource."


class StorageError(GlimpseError):
    default_message = "The image store failed; try again later."


class StoreNotFound(StorageError):
    default_message = "The image data could not be found in its store."


class StoreMismatch(StorageError):
    """Checked right after a write, the store's object differs (size or md5) from what was sent."""

    default_message = "The store did not keep the bytes it was given."


class StoreFull(StorageError):
    default_message = "The image store has no space left for this image."


class DatabaseUnavailable(StorageError):
    default_message = "The database is unavailable; try again later."


class FlowFailed(GlimpseError):
    default_message = "The import failed; its partial data was removed. Start the import again."


class ConfigError(GlimpseError):
    """The configuration cannot be used; the message names the option and what to write instead."""


class PolicyError(GlimpseError):
    """A policy rule or policy file cannot be used, or code asked for a rule that does not exist.

    ``rule`` names the offending rule when there is one; ``column`` is the 1-based position in its text.
    """

    def __init__(self, message: str, *, rule: str | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.column = column


class DownloadFailed(GlimpseError):
    """The web-download did not produce the whole image; the message says why and what to do."""

    default_message = "The image could not be downloaded; check the URL and import again."

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status the server answered with, when the failure is an error answer.
        self.status = status
