"""The content rules (``glimpse.domain.inspection``): what is accepted as which disk_format, which
safety check failures refuse an image, and the virtual size recorded."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from glimpse.config import load_settings
from glimpse.domain.inspection import ContentRules, ContentVerdict, judge_content
from glimpse.errors import FormatMismatch, UnsafeImage

STRICT = ContentRules()
LOOSE = ContentRules(require_image_format_match=False)
MIB4 = 4 * 1024 * 1024


def judge(
    disk_format: str | None,
    formats: Mapping[str, int],
    failures: Mapping[str, Mapping[str, str]] | None = None,
    *,
    rules: ContentRules = STRICT,
    size: int | None = 1000,
    broken: Mapping[str, str] | None = None,
) -> ContentVerdict:
    return judge_content(disk_format, formats, failures or {}, size=size, rules=rules, broken=broken)


@pytest.mark.parametrize(
    ("disk_format", "formats", "virtual_size"),
    [
        ("raw", {}, 1000),
        ("raw", {"gpt": 1000}, 1000),  # a partition table is raw
        ("qcow2", {"qcow2": MIB4}, MIB4),
        ("vmdk", {"vmdk": MIB4}, MIB4),
        ("vhd", {"vhd": MIB4}, MIB4),
        ("vhdx", {"vhdx": MIB4}, MIB4),
        ("vdi", {"vdi": MIB4}, MIB4),
        ("iso", {"iso": 2048}, 2048),
        ("iso", {"iso": 2048, "gpt": 1000}, 2048),  # hybrid ISO
        ("ami", {}, None),  # not inspectable: accepted, no virtual size known
        ("ploop", {"qcow2": MIB4}, MIB4),
    ],
)
def test_matching_content_is_accepted_with_its_virtual_size(
    disk_format: str, formats: dict[str, int], virtual_size: int | None
) -> None:
    verdict = judge(disk_format, formats)
    assert verdict.virtual_size == virtual_size
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    ("disk_format", "formats", "detected"),
    [
        ("raw", {"qcow2": MIB4}, "qcow2"),  # a raw image that is really qcow2
        ("qcow2", {}, "raw"),
        ("vmdk", {"qcow2": MIB4}, "qcow2"),
        ("qcow2", {"qcow2": MIB4, "vhd": MIB4}, "qcow2+vhd"),  # one header hidden in another
        ("iso", {"gpt": 1000}, "gpt"),
        ("raw", {"iso": 2048}, "iso"),
    ],
)
def test_content_in_another_format_is_a_mismatch(
    disk_format: str, formats: dict[str, int], detected: str
) -> None:
    with pytest.raises(FormatMismatch) as caught:
        judge(disk_format, formats)
    assert (
        f"The image data is {detected}, but the image's disk_format is {disk_format}" in caught.value.message
    )
    assert "require_image_format_match" in caught.value.message


def test_a_damaged_header_of_the_declared_format_is_a_mismatch() -> None:
    with pytest.raises(FormatMismatch, match=r"not a valid vhdx image \(Region count is 5000\)"):
        judge("vhdx", {}, broken={"vhdx": "Region count is 5000"})
    # Other formats' inspectors giving up means nothing; neither does the declared one's when the
    # data is recognised as something else (that is what the message then says).
    assert judge("raw", {}, broken={"vhdx": "Region count is 5000"}).virtual_size == 1000
    with pytest.raises(FormatMismatch, match="The image data is vdi, but the image's disk_format is vhdx"):
        judge("vhdx", {"vdi": 1}, broken={"vhdx": "Region signature not found"})


def test_without_require_image_format_match_a_mismatch_is_accepted() -> None:
    verdict = judge("raw", {"qcow2": MIB4}, rules=LOOSE)
    assert verdict.detected == "qcow2"
    assert verdict.virtual_size == MIB4  # what the data really holds


@pytest.mark.parametrize("rules", [STRICT, LOOSE])
def test_a_failed_safety_check_refuses_the_image_naming_it(rules: ContentRules) -> None:
    with pytest.raises(UnsafeImage) as caught:
        judge("qcow2", {"qcow2": MIB4}, {"qcow2": {"backing_file": "Image has a backing file"}}, rules=rules)
    assert caught.value.check == "qcow2/backing_file"
    assert "fails its safety check 'backing_file': Image has a backing file" in caught.value.message
    # ... also when the unsafe content is declared as something else and the match is not required.
    with pytest.raises(UnsafeImage):
        judge("raw", {"vmdk": 0}, {"vmdk": {"descriptor": "Unsupported subformat"}}, rules=LOOSE)


def test_gpt_failures_are_warnings_unless_configured_fatal() -> None:
    failures = {"gpt": {"mbr": "GPT MBR has invalid start LBA"}}
    verdict = judge("raw", {"gpt": 1000}, failures)
    assert verdict.warnings == ("gpt/mbr: GPT MBR has invalid start LBA",)
    with pytest.raises(UnsafeImage) as caught:
        judge("raw", {"gpt": 1000}, failures, rules=ContentRules(gpt_safety_checks_nonfatal=False))
    assert caught.value.check == "gpt/mbr"


def test_an_early_report_has_no_size_yet() -> None:
    assert judge("raw", {}, size=None).virtual_size is None


def test_the_options_are_read_from_image_format() -> None:
    assert load_settings(environ={}).content_rules == ContentRules(True, True)
    settings = load_settings(
        environ={
            "GLIMPSE_IMAGE_FORMAT__REQUIRE_IMAGE_FORMAT_MATCH": "false",
            "GLIMPSE_IMAGE_FORMAT__GPT_SAFETY_CHECKS_NONFATAL": "false",
        }
    )
    assert settings.content_rules == ContentRules(False, False)
