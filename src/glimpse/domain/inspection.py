"""What to do with the findings of a format inspection: the content rules of image data.

An inspection (``glimpse.streaming.ContentInspector``) reports which disk formats the bytes look
like, the virtual size each format's header gives, and which of each format's safety checks failed.
:func:`judge_content` turns those facts into a decision for an image of a given ``disk_format``:
refuse it (:class:`FormatMismatch`, :class:`UnsafeImage`) or accept it with the virtual size to
record. Pure: the same facts always give the same answer.

The rules (``[image_format]`` options, Glance's names):

* ``require_image_format_match`` (default on): the content must be in the declared ``disk_format``.
  ``raw`` is content in no known format, or a bare partition table (``gpt``, which also covers MBR);
  ``iso`` may also carry a partition table (hybrid ISOs); any other inspectable format must be the
  one and only format detected. Formats Glimpse cannot inspect (``ami``, ``ari``, ``aki``,
  ``ploop``) are not matched.
* Safety checks: every detected format's checks must pass (a qcow2 backing file or external data
  file, a VMDK create type other than monolithicSparse/streamOptimized or an extent naming a path,
  a bad protective MBR, ...). They run whatever ``require_image_format_match`` says.
* ``gpt_safety_checks_nonfatal`` (default on): failures of the ``gpt`` checks are warnings only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from glimpse.errors import FormatMismatch, UnsafeImage

#: Disk formats whose content can be recognised, with the names the inspector reports them under.
INSPECTABLE_DISK_FORMATS = frozenset({"raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso"})
#: Detected formats that are compatible with a declared one besides the format itself.
_ALSO_ALLOWED: Mapping[str, frozenset[str]] = {"raw": frozenset({"gpt"}), "iso": frozenset({"gpt"})}
#: The format whose safety check failures ``gpt_safety_checks_nonfatal`` turns into warnings.
PARTITION_TABLE = "gpt"


@dataclass(frozen=True, slots=True)
class ContentRules:
    """The ``[image_format]`` options that decide what content is accepted."""

    require_image_format_match: bool = True
    gpt_safety_checks_nonfatal: bool = True


@dataclass(frozen=True, slots=True)
class ContentVerdict:
    """An accepted content: what it was recognised as, its virtual size, and warnings to log."""

    detected: str
    virtual_size: int | None
    warnings: tuple[str, ...] = ()


def describe_formats(formats: Mapping[str, int]) -> str:
    """The detected formats as a user reads them: ``qcow2``, ``iso+gpt``, or ``raw`` for none."""
    return "+".join(sorted(formats)) or "raw"


def judge_content(
    disk_format: str | None,
    formats: Mapping[str, int],
    failures: Mapping[str, Mapping[str, str]],
    *,
    size: int | None,
    rules: ContentRules,
    broken: Mapping[str, str] | None = None,
) -> ContentVerdict:
    """Accept or refuse content declared as ``disk_format``.

    ``formats`` maps each detected format (never ``raw``) to the virtual size from its header
    (0 when the header does not tell); ``failures`` maps a detected format to its failed safety
    checks (check name → reason); ``broken`` maps a format to why its inspector gave up on the
    data (a damaged header). ``size`` is the number of bytes, or None while they still stream (the
    verdict's ``virtual_size`` is then not final).

    Raises :class:`FormatMismatch` (the content is not ``disk_format``) or :class:`UnsafeImage`
    (a safety check failed), naming the check.
    """
    broken = broken or {}
    detected = describe_formats(formats)
    if rules.require_image_format_match and disk_format in INSPECTABLE_DISK_FORMATS:
        _check_match(disk_format, formats, broken, detected)
    warnings: list[str] = []
    for fmt in sorted(failures):
        for check, reason in sorted(failures[fmt].items()):
            if fmt == PARTITION_TABLE and rules.gpt_safety_checks_nonfatal:
                warnings.append(f"{fmt}/{check}: {reason}")
                continue
            raise UnsafeImage(
                f"The image data is {fmt} and fails its safety check '{check}': {reason}. Images "
                "like this can make the hosts that use them read their own files, so they are "
                "refused; upload a self-contained image (for example converted with "
                "'qemu-img convert').",
                check=f"{fmt}/{check}",
            )
    return ContentVerdict(
        detected=detected, virtual_size=_virtual_size(disk_format, formats, size), warnings=tuple(warnings)
    )


def _check_match(
    disk_format: str, formats: Mapping[str, int], broken: Mapping[str, str], detected: str
) -> None:
    allowed = _ALSO_ALLOWED.get(disk_format, frozenset())
    found = set(formats)
    matches = (
        found <= allowed
        if disk_format == "raw"
        else disk_format in found and found - {disk_format} <= allowed
    )
    if not matches and disk_format in broken and not formats:
        # Nothing recognised, and the declared format's inspector gave up on the data: say why.
        raise FormatMismatch(
            f"The image data is not a valid {disk_format} image ({broken[disk_format]}), but the "
            f"image's disk_format is {disk_format}. Upload a {disk_format} image, or set disk_format "
            "to the format of the data."
        )
    if not matches:
        raise FormatMismatch(
            f"The image data is {detected}, but the image's disk_format is {disk_format} "
            "(require_image_format_match is on). Set disk_format to the format of the data, or "
            f"upload {disk_format} data (for example converted with 'qemu-img convert -O "
            f"{'vpc' if disk_format == 'vhd' else disk_format}')."
        )


def _virtual_size(disk_format: str | None, formats: Mapping[str, int], size: int | None) -> int | None:
    """The declared format's virtual size when its header gives one; the byte count for raw (and
    for iso without a header size); else the size the one detected format gives, if any."""
    if disk_format is not None and formats.get(disk_format):
        return formats[disk_format]
    if disk_format in ("raw", "iso") and (not formats or set(formats) <= {"gpt", "iso"}):
        return size
    if len(formats) == 1:
        return next(iter(formats.values())) or None
    return None


class InspectionFacts(Protocol):
    """What an inspection reports (``glimpse.streaming.ContentReport`` has this shape)."""

    @property
    def formats(self) -> Mapping[str, int]: ...
    @property
    def failures(self) -> Mapping[str, Mapping[str, str]]: ...
    @property
    def broken(self) -> Mapping[str, str]: ...
    @property
    def size(self) -> int: ...
    @property
    def final(self) -> bool: ...


def content_judge(
    disk_format: str | None, rules: ContentRules
) -> Callable[[InspectionFacts], ContentVerdict]:
    """The judge of an inspection of data given for an image of ``disk_format``: a report made
    before the end (``final`` false) is judged without a size; the final one gives the verdict."""

    def judge(facts: InspectionFacts) -> ContentVerdict:
        return judge_content(
            disk_format,
            facts.formats,
            facts.failures,
            size=facts.size if facts.final else None,
            rules=rules,
            broken=facts.broken,
        )

    return judge
