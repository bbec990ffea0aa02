"""Seeded variants: each student's numbers in an exercise come from their student id.

A lab's first code cell sets `STUDENT_ID`; an exercise with numbers picks them with
`pick(student, key, choices)`, and its check computes the expected answer from the same
pick, so a neighbour's number fails. When the grader runs a notebook it sets
`VMKIT_STUDENT_ID` to the submission's directory name, which wins over the notebook's value.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import TypeVar

from ..errors import InvalidInput

VARIABLE = "VMKIT_STUDENT_ID"
T = TypeVar("T")


def student_id(declared: str) -> str:
    """The id the variants use: the grader's `VMKIT_STUDENT_ID` if set, else the notebook's."""
    graded = os.environ.get(VARIABLE, "").strip()
    if graded:
        if str(declared).strip() != graded:
            print(f"참고: 채점에서는 노트북의 STUDENT_ID({declared!r}) 대신 제출 이름 {graded!r}로 변형(variant)을 정합니다.")
        return graded
    if not isinstance(declared, str) or not declared.strip():
        raise InvalidInput("STUDENT_ID가 비어 있습니다: 첫 코드 셀에 학번(student ID)을 문자열로 적으세요.")
    return declared.strip()


def pick(student: str, key: str, choices: Sequence[T]) -> T:
    """One of `choices`, always the same for the same student and key (sha256, not `random`)."""
    if not choices:
        raise InvalidInput("변형(variant)으로 고를 값이 없습니다.")
    digest = hashlib.sha256(f"{student}\0{key}".encode()).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]
