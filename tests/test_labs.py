"""Every lab follows the conventions the grading relies on (README: "Lab notebook conventions")."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

LABS = sorted((Path(__file__).resolve().parent.parent / "labs").glob("[0-9][0-9]-*.ipynb"))


def test_there_are_five_labs():
    assert [lab.name[:2] for lab in LABS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_lab_opens_with_goals_and_ends_with_a_summary(lab):
    nb = nbformat.read(lab, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[0].startswith(f"# 실습 {int(lab.name[:2])}:"), "title: '# 실습 N: ...'"
    assert any("이 실습에서 배울 것" in text for text in markdown[:3]), "what the student will learn"
    assert any(text.startswith("## 정리") for text in markdown[-3:]), "a closing summary"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_lab_has_three_or_more_tagged_exercises(lab):
    """exercise-N on the prompt, then a `solution` cell, then right after it a `check` cell."""
    cells = nbformat.read(lab, as_version=4).cells
    tags = [set(c.metadata.get("tags", [])) for c in cells]
    numbers = sorted({int(t.split("-")[1]) for ts in tags for t in ts if t.startswith("exercise-")})
    assert len(numbers) >= 3 and numbers == list(range(1, len(numbers) + 1)), numbers
    for n in numbers:
        mine = [i for i, ts in enumerate(tags) if f"exercise-{n}" in ts and "hidden" not in ts]
        kinds = [("solution" if "solution" in tags[i] else "check" if "check" in tags[i] else "prompt")
                 for i in mine]
        assert kinds == ["prompt", "solution", "check"], (n, kinds)
        prompt, solution, check = (cells[i] for i in mine)
        assert prompt.cell_type == "markdown" and solution.cell_type == check.cell_type == "code"
        assert mine[2] == mine[1] + 1, f"exercise {n}: the check must follow its solution"
        assert "answer_" in solution.source, f"exercise {n}: the solution assigns answer_… variables"
        assert "assert" in check.source, f"exercise {n}: the check asserts"
        for i, ts in enumerate(tags):
            if f"exercise-{n}" in ts and "hidden" in ts:  # graded, never shown: not in the book either
                assert {"check", "remove-cell"} <= ts and cells[i].cell_type == "code", (n, ts)


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_what_is_for_machines_stays_out_of_the_readers_way(lab):
    """nbval's markers are cell tags, not comments a reader sees; code comments are Korean."""
    import re

    for cell in nbformat.read(lab, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        assert "NBVAL" not in cell.source, f"tag the cell 'nbval-ignore-output' instead: {cell.source[:80]}"
        for comment in re.findall(r"(?m)#\s*(.*)$", cell.source):
            english = re.search(r"[A-Za-z]{3,}(\s+[A-Za-z]{2,}){3,}", comment)
            assert not english or re.search(r"[가-힣]", comment), f"a comment in English: {comment}"


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_visible_checks_check_form_not_the_answer(lab):
    """A visible check confirms type, range and plausibility; it repeats no line of the solution
    or of a hidden check (those comparisons are what `vmkit grade` runs, unseen)."""
    import re

    def lines(cell) -> set[str]:
        return {re.sub(r"\s+", "", line) for line in cell.source.splitlines()
                if len(line.strip()) >= 12 and not line.lstrip().startswith(("#", "import "))}

    cells = nbformat.read(lab, as_version=4).cells
    roles: dict[int, dict[str, list]] = {}
    for cell in cells:
        tags = set(cell.metadata.get("tags", []))
        number = next((int(t.split("-")[1]) for t in tags if t.startswith("exercise-")), None)
        if number is None or cell.cell_type != "code":
            continue
        role = "hidden" if "hidden" in tags else "solution" if "solution" in tags else "check"
        roles.setdefault(number, {}).setdefault(role, []).append(cell)
    for number, found in roles.items():
        assert found.get("hidden"), f"exercise {number}: the exact comparison belongs in a hidden check"
        visible = set().union(*(lines(c) for c in found["check"]))
        secret = set().union(*(lines(c) for c in found["solution"] + found["hidden"]))
        assert not visible & secret, f"exercise {number}: the visible check gives away {visible & secret}"


def _prompts(cells) -> dict[int, set[str]]:
    """{exercise number: the tags of its prompt (markdown) cell}."""
    found = {}
    for cell in cells:
        tags = set(cell.metadata.get("tags", []))
        number = next((int(t.split("-")[1]) for t in tags if t.startswith("exercise-")), None)
        if number is not None and cell.cell_type == "markdown":
            found[number] = tags
    return found


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_at_least_half_the_exercises_ask_for_a_decision(lab):
    """Exercises tagged `decide` make the student predict before measuring, choose a parameter,
    find a fact inside a guest or container, or explain by choosing a cause: at least half."""
    prompts = _prompts(nbformat.read(lab, as_version=4).cells)
    deciding = [n for n, tags in prompts.items() if "decide" in tags]
    assert 2 * len(deciding) >= len(prompts), f"{len(deciding)} of {len(prompts)} exercises ask for a decision"


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_each_lab_has_a_variant_drawn_from_the_student_id(lab):
    """The first code cell sets STUDENT_ID, from which the student's numbers are picked; an exercise tagged
    `variant` uses them in its prompt and in the hidden check that grades it."""
    import re

    cells = nbformat.read(lab, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "code")
    assert re.search(r'^STUDENT_ID = "', first.source, re.M), "the first code cell sets STUDENT_ID"
    picked = [name for c in cells if c.cell_type == "code" and "variant.pick(variant.student_id(STUDENT_ID)" in c.source
              for name in re.findall(r"^(my_\w+) = ", c.source, re.M)]
    assert picked, "the student's numbers are picked with variant.pick from STUDENT_ID"
    variants = [n for n, tags in _prompts(cells).items() if "variant" in tags]
    assert variants, "an exercise is tagged 'variant'"
    for n in variants:
        mine = [c for c in cells if f"exercise-{n}" in c.metadata.get("tags", [])]
        prompt = next(c for c in mine if c.cell_type == "markdown")
        hidden = [c for c in mine if "hidden" in c.metadata.get("tags", [])]
        assert any(name in prompt.source for name in picked), f"exercise {n}: the prompt names the variant"
        assert any(name in c.source for c in hidden for name in picked), \
            f"exercise {n}: the hidden check grades against the student's own variant"
