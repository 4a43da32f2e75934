"""Authorisation: the named rules, their Glance-compatible defaults, and :class:`Policy`.

Every API operation is guarded by one named rule (``get_image``, ``publicize_image``, ...). A rule is a string
in the oslo.policy language (:mod:`glimpse.domain.rule_language`); :data:`DEFAULT_RULES` holds the defaults,
which follow Glance's secure-RBAC defaults (``admin`` / ``member`` / ``reader`` roles,
``project_id:%(project_id)s`` ownership checks). An operator may replace any rule, or add custom ones, with
a policy file, which :mod:`glimpse.policy_file` reads into the overrides a :class:`Policy` is built with
(see ``docs/policy.md``).

Targets are plain mappings. For images build them with :func:`image_target`; its keys are:

``project_id``
    the image owner (the project the ownership checks compare the caller's project with)
``owner``
    the image owner as well; for ``add_image`` it is the owner the caller asked for
``visibility``
    ``public``, ``community``, ``shared`` or ``private``
``member_id``
    the caller's project when that project is a member of the image (any member status), else ``None``
``member_status``
    that membership's status (``pending``, ``accepted``, ``rejected``), else ``None``
``protected``
    whether the image is protected (pass it through ``extra``)

Operations with no image (``get_images``, ``add_task``, ...) take ``{"project_id": <caller's project>}``
or an empty mapping. The policy only answers "may this caller do this to this target"; which images a
caller can see at all is decided by the repository, and an image the caller may not see is reported as
404, never 403.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from glimpse.context import RequestContext
from glimpse.domain.property_protections import PropertyOperation, PropertyProtections
from glimpse.domain.rule_language import RuleSet
from glimpse.errors import Forbidden, PolicyError

__all__ = [
    "DEFAULTS",
    "DEFAULT_RULES",
    "IMAGE_TARGET_KEYS",
    "SCOPES",
    "SCOPE_TYPES",
    "Policy",
    "PolicyError",
    "PolicyRule",
    "RuleDefault",
    "image_target",
    "token_scope",
]


class PolicyRule(enum.StrEnum):
    """The rule names the service enforces; each is documented in :data:`DEFAULT_RULES`."""

    CONTEXT_IS_ADMIN = "context_is_admin"
    DEFAULT = "default"
    SERVICE_API = "service_api"
    ADD_IMAGE = "add_image"
    GET_IMAGE = "get_image"
    GET_IMAGES = "get_images"
    MODIFY_IMAGE = "modify_image"
    PUBLICIZE_IMAGE = "publicize_image"
    COMMUNITIZE_IMAGE = "communitize_image"
    DELETE_IMAGE = "delete_image"
    UPLOAD_IMAGE = "upload_image"
    DOWNLOAD_IMAGE = "download_image"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    COPY_IMAGE = "copy_image"
    GET_IMAGE_LOCATION = "get_image_location"
    SET_IMAGE_LOCATION = "set_image_location"
    DELETE_IMAGE_LOCATION = "delete_image_location"
    ADD_IMAGE_LOCATION = "add_image_location"
    FETCH_IMAGE_LOCATION = "fetch_image_location"
    ADD_MEMBER = "add_member"
    GET_MEMBER = "get_member"
    GET_MEMBERS = "get_members"
    MODIFY_MEMBER = "modify_member"
    DELETE_MEMBER = "delete_member"
    GET_TASK = "get_task"
    GET_TASKS = "get_tasks"
    ADD_TASK = "add_task"
    MODIFY_TASK = "modify_task"
    CANCEL_IMAGE_TASK = "cancel_image_task"
    GET_IMAGE_HISTORY = "get_image_history"
    TASKS_API_ACCESS = "tasks_api_access"
    STORES_INFO_DETAIL = "stores_info_detail"
    GET_METRICS = "get_metrics"
    METADEF_DEFAULT = "metadef_default"
    METADEF_ADMIN = "metadef_admin"
    GET_METADEF_NAMESPACE = "get_metadef_namespace"
    GET_METADEF_NAMESPACES = "get_metadef_namespaces"
    MODIFY_METADEF_NAMESPACE = "modify_metadef_namespace"
    ADD_METADEF_NAMESPACE = "add_metadef_namespace"
    DELETE_METADEF_NAMESPACE = "delete_metadef_namespace"
    GET_METADEF_OBJECT = "get_metadef_object"
    GET_METADEF_OBJECTS = "get_metadef_objects"
    MODIFY_METADEF_OBJECT = "modify_metadef_object"
    ADD_METADEF_OBJECT = "add_metadef_object"
    DELETE_METADEF_OBJECT = "delete_metadef_object"
    LIST_METADEF_RESOURCE_TYPES = "list_metadef_resource_types"
    GET_METADEF_RESOURCE_TYPE = "get_metadef_resource_type"
    ADD_METADEF_RESOURCE_TYPE_ASSOCIATION = "add_metadef_resource_type_association"
    REMOVE_METADEF_RESOURCE_TYPE_ASSOCIATION = "remove_metadef_resource_type_association"
    GET_METADEF_PROPERTY = "get_metadef_property"
    GET_METADEF_PROPERTIES = "get_metadef_properties"
    MODIFY_METADEF_PROPERTY = "modify_metadef_property"
    ADD_METADEF_PROPERTY = "add_metadef_property"
    REMOVE_METADEF_PROPERTY = "remove_metadef_property"
    GET_METADEF_TAG = "get_metadef_tag"
    GET_METADEF_TAGS = "get_metadef_tags"
    MODIFY_METADEF_TAG = "modify_metadef_tag"
    ADD_METADEF_TAG = "add_metadef_tag"
    ADD_METADEF_TAGS = "add_metadef_tags"
    DELETE_METADEF_TAG = "delete_metadef_tag"
    DELETE_METADEF_TAGS = "delete_metadef_tags"


#: The scopes a Keystone token can have (``glimpse.context.RequestContext``): see :func:`token_scope`.
SCOPES: Final = ("project", "domain", "system")


def token_scope(context: RequestContext) -> str:
    """``system`` for a system-scoped token, ``domain`` for a domain-scoped one, else ``project``."""
    if context.system_scope:
        return "system"
    if context.domain_id and not context.project_id:
        return "domain"
    return "project"


@dataclass(frozen=True, slots=True)
class RuleDefault:
    """One rule as shipped: its name, its default rule string, what it guards and the token scopes it
    accepts (empty: any; with ``[oslo_policy] enforce_scope`` another scope is refused, as in Glance)."""

    name: str
    default: str
    description: str
    scope_types: tuple[str, ...] = ("project",)


# Building blocks of the defaults, so each ownership idea is spelled once.
_ADMIN = "rule:context_is_admin"
_OWNER_MEMBER = "role:member and project_id:%(project_id)s"
_OWNER_READER = "role:reader and project_id:%(project_id)s"
_ANY_VISIBLE = (
    "project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s"
    " or 'public':%(visibility)s or 'shared':%(visibility)s"
)
_ADMIN_OR_OWNER_MEMBER = f"{_ADMIN} or ({_OWNER_MEMBER})"
_ADMIN_OR_OWNER_READER = f"{_ADMIN} or ({_OWNER_READER})"
_ADMIN_OR_READER_OF_OWNER_OR_MEMBER = (
    f"{_ADMIN} or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)"
)
#: Metadata definitions: readers see public namespaces and their own project's; metadef_admin writes.
_METADEF_READ = f"{_ADMIN} or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))"
_METADEF_WRITE = "rule:metadef_admin"

_R = PolicyRule

#: Every shipped rule, in the order the operator documentation lists them.
DEFAULT_RULES: Final[tuple[RuleDefault, ...]] = (
    RuleDefault(
        _R.CONTEXT_IS_ADMIN,
        "role:admin",
        "Who is an administrator; other rules use it as rule:context_is_admin.",
        (),
    ),
    RuleDefault(_R.DEFAULT, "", "Fallback that the task rules refer to; empty means anyone.", ()),
    RuleDefault(
        _R.SERVICE_API,
        "role:service or role:admin",
        "Service-to-service callers such as compute and volume services.",
        (),
    ),
    RuleDefault(
        _R.ADD_IMAGE,
        f"{_ADMIN} or (role:member and project_id:%(project_id)s and project_id:%(owner)s)",
        "Create an image record (POST /v2/images) owned by the caller's own project.",
    ),
    RuleDefault(
        _R.GET_IMAGE,
        f"{_ADMIN} or (role:reader and ({_ANY_VISIBLE}))",
        "Show one image (GET /v2/images/{image_id}); a refusal is reported as 404.",
    ),
    RuleDefault(
        _R.GET_IMAGES,
        _ADMIN_OR_OWNER_READER,
        "List images (GET /v2/images); the target is the caller's project.",
    ),
    RuleDefault(
        _R.MODIFY_IMAGE,
        _ADMIN_OR_OWNER_MEMBER,
        "Change an image: PATCH, staging data, starting a non-copy import.",
    ),
    RuleDefault(
        _R.PUBLICIZE_IMAGE, _ADMIN, "Make an image public (create it public or PATCH visibility to public)."
    ),
    RuleDefault(_R.COMMUNITIZE_IMAGE, _ADMIN_OR_OWNER_MEMBER, "Make an image community-visible."),
    RuleDefault(_R.DELETE_IMAGE, _ADMIN_OR_OWNER_MEMBER, "Delete an image (DELETE /v2/images/{image_id})."),
    RuleDefault(
        _R.UPLOAD_IMAGE, _ADMIN_OR_OWNER_MEMBER, "Upload image data (PUT /v2/images/{image_id}/file)."
    ),
    RuleDefault(
        _R.DOWNLOAD_IMAGE,
        f"{_ADMIN} or (role:member and ({_ANY_VISIBLE}))",
        "Download image data (GET /v2/images/{image_id}/file).",
    ),
    RuleDefault(_R.DEACTIVATE, _ADMIN_OR_OWNER_MEMBER, "Deactivate an image (POST .../actions/deactivate)."),
    RuleDefault(_R.REACTIVATE, _ADMIN_OR_OWNER_MEMBER, "Reactivate an image (POST .../actions/reactivate)."),
    RuleDefault(
        _R.COPY_IMAGE, _ADMIN, "Copy an active image's data to more stores (import method copy-image)."
    ),
    RuleDefault(_R.GET_IMAGE_LOCATION, _ADMIN_OR_OWNER_READER, "See an image's locations and direct_url."),
    RuleDefault(
        _R.SET_IMAGE_LOCATION, _ADMIN_OR_OWNER_MEMBER, "Add or replace image locations through PATCH."
    ),
    RuleDefault(_R.DELETE_IMAGE_LOCATION, _ADMIN, "Remove image locations through PATCH."),
    RuleDefault(
        _R.ADD_IMAGE_LOCATION,
        f"rule:service_api or ({_OWNER_MEMBER})",
        "Add a location to a queued image (POST /v2/images/{image_id}/locations).",
    ),
    RuleDefault(
        _R.FETCH_IMAGE_LOCATION,
        "rule:service_api",
        "List locations with store ids (GET /v2/images/{image_id}/locations).",
    ),
    RuleDefault(
        _R.ADD_MEMBER, _ADMIN_OR_OWNER_MEMBER, "Share an image with another project (POST .../members)."
    ),
    RuleDefault(
        _R.GET_MEMBER,
        _ADMIN_OR_READER_OF_OWNER_OR_MEMBER,
        "Show one image member (GET .../members/{member_id}).",
    ),
    RuleDefault(
        _R.GET_MEMBERS, _ADMIN_OR_READER_OF_OWNER_OR_MEMBER, "List an image's members (GET .../members)."
    ),
    RuleDefault(
        _R.MODIFY_MEMBER,
        f"{_ADMIN} or (role:member and project_id:%(member_id)s)",
        "Accept or reject a share; only the member project answers (PUT .../members/{member_id}).",
    ),
    RuleDefault(
        _R.DELETE_MEMBER,
        _ADMIN_OR_OWNER_MEMBER,
        "Stop sharing an image with a project (DELETE .../members/{member_id}).",
    ),
    RuleDefault(_R.GET_TASK, "rule:default", "Show one task (GET /v2/tasks/{task_id})."),
    RuleDefault(_R.GET_TASKS, "rule:default", "List tasks (GET /v2/tasks)."),
    RuleDefault(_R.ADD_TASK, "rule:default", "Create a task (POST /v2/tasks)."),
    RuleDefault(_R.MODIFY_TASK, "rule:default", "Change a task."),
    RuleDefault(
        _R.CANCEL_IMAGE_TASK,
        f"{_ADMIN} or user_id:%(task_user_id)s or ({_OWNER_MEMBER})",
        "Cancel an image's pending or running import or copy (DELETE /v2/images/{image_id}/tasks/"
        "{task_id}): the task's own user, or a member of the image's owner project. A Glimpse addition.",
    ),
    RuleDefault(
        _R.GET_IMAGE_HISTORY,
        f"{_ADMIN} or (role:reader and ({_ANY_VISIBLE}))",
        "Read an image's history (GET /v2/images/{image_id}/history), as get_image by default. A "
        "Glimpse addition.",
    ),
    RuleDefault(
        _R.TASKS_API_ACCESS, _ADMIN, "Use the /v2/tasks API at all (deprecated, for administrators)."
    ),
    RuleDefault(
        _R.STORES_INFO_DETAIL,
        f"{_ADMIN} or rule:service_api",
        "See store details (GET /v2/info/stores/detail).",
    ),
    RuleDefault(
        _R.GET_METRICS, _ADMIN, "Read the node's Prometheus metrics (GET /metrics).", ("system", "project")
    ),
    RuleDefault(
        _R.METADEF_DEFAULT, "", "Fallback for custom metadata-definition rules; empty means anyone.", ()
    ),
    RuleDefault(
        _R.METADEF_ADMIN,
        "role:admin",
        "Who may change metadata definitions; the write rules refer to it.",
        (),
    ),
    RuleDefault(
        _R.GET_METADEF_NAMESPACE,
        _METADEF_READ,
        "Show a metadata definition namespace (GET /v2/metadefs/namespaces/{namespace}).",
    ),
    RuleDefault(
        _R.GET_METADEF_NAMESPACES,
        _ADMIN_OR_OWNER_READER,
        "List metadata definition namespaces; the target is the caller's project.",
    ),
    RuleDefault(
        _R.MODIFY_METADEF_NAMESPACE, _METADEF_WRITE, "Change a namespace (PUT .../namespaces/{namespace})."
    ),
    RuleDefault(
        _R.ADD_METADEF_NAMESPACE, _METADEF_WRITE, "Create a namespace (POST /v2/metadefs/namespaces)."
    ),
    RuleDefault(
        _R.DELETE_METADEF_NAMESPACE,
        _METADEF_WRITE,
        "Delete a namespace, or all its objects, properties or tags.",
    ),
    RuleDefault(_R.GET_METADEF_OBJECT, _METADEF_READ, "Show an object of a namespace."),
    RuleDefault(_R.GET_METADEF_OBJECTS, _METADEF_READ, "List the objects of a namespace."),
    RuleDefault(_R.MODIFY_METADEF_OBJECT, _METADEF_WRITE, "Change an object of a namespace."),
    RuleDefault(_R.ADD_METADEF_OBJECT, _METADEF_WRITE, "Add an object to a namespace."),
    RuleDefault(_R.DELETE_METADEF_OBJECT, _METADEF_WRITE, "Remove an object from a namespace."),
    RuleDefault(
        _R.LIST_METADEF_RESOURCE_TYPES,
        _ADMIN_OR_OWNER_READER,
        "List resource types (GET /v2/metadefs/resource_types); the target is the caller's project.",
    ),
    RuleDefault(
        _R.GET_METADEF_RESOURCE_TYPE, _METADEF_READ, "List a namespace's resource type associations."
    ),
    RuleDefault(
        _R.ADD_METADEF_RESOURCE_TYPE_ASSOCIATION,
        _METADEF_WRITE,
        "Associate a namespace with a resource type.",
    ),
    RuleDefault(
        _R.REMOVE_METADEF_RESOURCE_TYPE_ASSOCIATION,
        _METADEF_WRITE,
        "Remove a namespace's association with a resource type.",
    ),
    RuleDefault(_R.GET_METADEF_PROPERTY, _METADEF_READ, "Show a property of a namespace."),
    RuleDefault(_R.GET_METADEF_PROPERTIES, _METADEF_READ, "List the properties of a namespace."),
    RuleDefault(_R.MODIFY_METADEF_PROPERTY, _METADEF_WRITE, "Change a property of a namespace."),
    RuleDefault(_R.ADD_METADEF_PROPERTY, _METADEF_WRITE, "Add a property to a namespace."),
    RuleDefault(_R.REMOVE_METADEF_PROPERTY, _METADEF_WRITE, "Remove a property from a namespace."),
    RuleDefault(_R.GET_METADEF_TAG, _METADEF_READ, "Show a tag of a namespace."),
    RuleDefault(_R.GET_METADEF_TAGS, _METADEF_READ, "List the tags of a namespace."),
    RuleDefault(_R.MODIFY_METADEF_TAG, _METADEF_WRITE, "Rename a tag of a namespace."),
    RuleDefault(_R.ADD_METADEF_TAG, _METADEF_WRITE, "Add one tag to a namespace (POST .../tags/{tag})."),
    RuleDefault(_R.ADD_METADEF_TAGS, _METADEF_WRITE, "Replace or extend a namespace's tags (POST .../tags)."),
    RuleDefault(_R.DELETE_METADEF_TAG, _METADEF_WRITE, "Remove a tag from a namespace."),
    RuleDefault(_R.DELETE_METADEF_TAGS, _METADEF_WRITE, "Remove every tag of a namespace (DELETE .../tags)."),
)

#: Rule name -> default rule string.
DEFAULTS: Final[Mapping[str, str]] = MappingProxyType({str(r.name): r.default for r in DEFAULT_RULES})

#: Rule name -> the token scopes it accepts (empty or absent: any, as for custom rules).
SCOPE_TYPES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {str(r.name): r.scope_types for r in DEFAULT_RULES}
)

#: The keys :func:`image_target` always sets.
IMAGE_TARGET_KEYS: Final[tuple[str, ...]] = (
    "project_id",
    "owner",
    "visibility",
    "member_id",
    "member_status",
)


def image_target(
    owner: str | None,
    visibility: object,
    member_id: str | None = None,
    member_status: object = None,
    **extra: object,
) -> dict[str, object]:
    """The target for an image rule; ``extra`` adds keys such as ``protected`` or overrides the others."""
    target: dict[str, object] = {
        "project_id": owner,
        "owner": owner,
        "visibility": visibility,
        "member_id": member_id,
        "member_status": member_status,
    }
    target.update(extra)
    return target


class Policy:
    """The shipped defaults with an operator's overrides applied, every rule parsed and checked once.

    ``overrides`` maps rule names to rule strings; names that are not shipped become custom rules.
    Build it once at start-up (:func:`glimpse.policy_file.load_policy` reads ``[oslo_policy] policy_file``)
    and pass it down; it is immutable and safe to share between threads.

    ``protections`` are the property protections in force (:meth:`property_allowed`); in the
    ``policies`` format every rule they name must be a rule of this policy.
    """

    __slots__ = ("_rules", "enforce_scope", "protections")

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        enforce_scope: bool = True,
        protections: PropertyProtections | None = None,
    ) -> None:
        self._rules = RuleSet({**DEFAULTS, **(overrides or {})})
        self.enforce_scope = enforce_scope
        self.protections = protections or PropertyProtections.none()
        missing = sorted(self.protections.policy_rules() - set(self._rules.sources))
        if missing:
            raise PolicyError(
                f"The property protection file names the policy rule(s) {', '.join(missing)}, which the "
                "policy does not define; add them to the [oslo_policy] policy_file (for example "
                f"'{missing[0]}: role:admin') or name a defined rule.",
                rule=missing[0],
            )

    def scope_allows(self, rule: str, context: RequestContext) -> bool:
        """Whether the caller's token scope may use ``rule`` (always, unless ``enforce_scope`` is on)."""
        scopes = SCOPE_TYPES.get(rule, ())
        return not (self.enforce_scope and scopes and token_scope(context) not in scopes)

    @property
    def rules(self) -> Mapping[str, str]:
        """Every rule in force (defaults, overrides and custom rules): name -> rule string."""
        return self._rules.sources

    def check(self, rule: str, context: RequestContext, target: Mapping[str, object]) -> bool:
        """Whether ``rule`` allows ``context`` to act on ``target``; an unknown rule is a PolicyError."""
        if not self.scope_allows(rule, context):
            return False
        credentials = {
            "user_id": context.user_id,
            "project_id": context.project_id,
            "is_admin": context.is_admin,
            "system_scope": context.system_scope,
            "domain_id": context.domain_id,
            "user_domain_id": context.user_domain_id,
            "project_domain_id": context.project_domain_id,
        }
        return self._rules.evaluate(rule, context.roles, credentials, target)

    def enforce(self, rule: str, context: RequestContext, target: Mapping[str, object]) -> None:
        """Raise :class:`~glimpse.errors.Forbidden` unless ``rule`` allows it.

        Callers that guard an image the caller may not be able to see turn this into NotFound themselves.
        """
        if not self.scope_allows(rule, context):
            raise Forbidden(
                f"Policy doesn't allow {rule} to be performed with a {token_scope(context)}-scoped token; "
                f"use a token scoped to a {' or '.join(SCOPE_TYPES[rule])}."
            )
        if not self.check(rule, context, target):
            raise Forbidden(f"Policy doesn't allow {rule} to be performed.")

    def property_allowed(self, context: RequestContext, name: str, operation: PropertyOperation) -> bool:
        """Whether the property protections let ``context`` do ``operation`` to the custom property
        ``name`` (always, when no property protection file is configured)."""
        return self.protections.allows(
            name,
            operation,
            (*context.roles, *context.service_roles),
            lambda rule: self.check(rule, context, {}),
        )

    def is_admin(self, context: RequestContext) -> bool:
        """Whether ``context_is_admin`` holds for the caller (how the auth layer sets ``is_admin``)."""
        return self.check(PolicyRule.CONTEXT_IS_ADMIN, context, {})
