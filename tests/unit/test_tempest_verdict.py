"""How a Tempest run is held against the exclude and skip lists (``tempestsupport.judge``), and the two
lists kept in ``tests/data`` themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tempestsupport import judge, per_test, plain_id, read_list

DATA = Path(__file__).resolve().parents[1] / "data"
EXCLUDED = [(r"^tempest\.api\.image\.v2\.admin\.test_images_metadefs_", "issue 13: no metadefs API")]
SKIPS = [(r"^tempest\.api\.image\.v2\.test_images\.ImageLocationsTest\b", "manage_locations is off")]
METADEFS = "tempest.api.image.v2.admin.test_images_metadefs_namespaces.MetadataNamespacesTest.test_basic"
LOCATIONS = "tempest.api.image.v2.test_images.ImageLocationsTest.test_set_location"
BASIC = "tempest.api.image.v2.test_images.BasicOperationsImagesTest.test_delete_image"


def outcome(status: str, reason: str = "") -> dict[str, str]:
    return {"status": status, "reason": reason}


def test_a_run_as_documented_has_no_problems() -> None:
    verdict = judge(
        {METADEFS: outcome("fail", "404"), LOCATIONS: outcome("skip", "off"), BASIC: outcome("success")},
        EXCLUDED,
        SKIPS,
    )
    assert verdict.problems == []
    assert (verdict.passed, verdict.known_failures, verdict.skipped) == (
        [BASIC],
        [METADEFS],
        {LOCATIONS: "off"},
    )
    assert verdict.summary() == "1 passed, 1 skipped, 1 excluded (run, and failing as listed)"


@pytest.mark.parametrize(
    ("results", "words"),
    [
        ({METADEFS: outcome("success"), LOCATIONS: outcome("skip")}, "passes now"),
        ({METADEFS: outcome("fail"), LOCATIONS: outcome("skip"), BASIC: outcome("fail", "boom")}, "boom"),
        ({METADEFS: outcome("fail"), LOCATIONS: outcome("skip"), BASIC: outcome("skip", "why")}, "why"),
        ({LOCATIONS: outcome("skip"), BASIC: outcome("success")}, "(exclude list) matches no test"),
        ({METADEFS: outcome("fail"), LOCATIONS: outcome("success")}, "(skip list) matches no skipped test"),
    ],
)
def test_every_difference_from_the_lists_is_a_problem(results: dict[str, dict[str, str]], words: str) -> None:
    problems = judge(results, EXCLUDED, SKIPS).problems
    assert len(problems) == 1
    assert words in problems[0]


def test_plain_ids_drop_tempests_attributes() -> None:
    assert plain_id(f"{BASIC}[id-f848bb94-1c6e-45a4-8726-39e3a5b23535,smoke]") == BASIC
    assert plain_id(BASIC) == BASIC


def test_a_class_level_outcome_is_each_of_its_tests() -> None:
    other = LOCATIONS.replace("test_set_location", "test_replace_location")
    listed = [f"{LOCATIONS}[id-1]", f"{other}[id-2,smoke]", f"{BASIC}[id-3]", f"{METADEFS}[id-4]"]
    raw = {
        "setUpClass (tempest.api.image.v2.test_images.ImageLocationsTest)": outcome("skip", "off"),
        f"{BASIC}[id-3]": outcome("success"),
        "tearDownClass (tempest.api.image.v2.test_images.BasicOperationsImagesTest)": outcome("fail", "x"),
    }
    assert per_test(raw, listed) == {
        LOCATIONS: outcome("skip", "off"),
        other: outcome("skip", "off"),
        BASIC: outcome("success"),
        METADEFS: outcome("missing", "listed by `stestr list`, but no outcome was reported"),
        "tempest.api.image.v2.test_images.BasicOperationsImagesTest.tearDownClass": outcome("fail", "x"),
    }


def test_a_line_without_a_reason_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("# a comment\n\n^tempest\\.api\\.image\\.x  # why\n^tempest\\.api\\.image\\.y\n")
    with pytest.raises(ValueError, match=r"list\.txt:4"):
        read_list(listed)


@pytest.mark.parametrize("name", ["tempest-exclude.txt", "tempest-skips.txt"])
def test_the_kept_lists_name_image_tests_and_say_why(name: str) -> None:
    entries = read_list(DATA / name)
    assert entries
    for pattern, reason in entries:
        assert pattern.startswith(r"^tempest\.api\.image\."), pattern
        assert len(reason) > 15, f"{pattern}: say why"
