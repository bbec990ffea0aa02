"""The chapters say everything the source says (../shared/seed), in the book's own words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = ["hypervisor.md", "hypervisor-types.md", "containers-and-vms.md"]

#: The source's key terms and claims, by section, each as words that must appear in the
#: chapter that mirrors that section (a pattern where the wording may vary).
FACTS = {
    "hypervisor.md": [  # 1.1 개념
        "가상 머신 모니터", "VMM", "호스트", "게스트", "자원 풀", "스케줄링",
        "메모리 관리 프로그램", "프로세스 스케줄러", "I/O", "기기 드라이버", "보안 관리 프로그램",
        "네트워크 스택", r"여러 운영 체제|운영 체제 여러 개", r"운영 체제 하나만|운영 체제를 1개",
        "VMware", "ESXi", "vSphere", "KVM", "리눅스 커널", "Xen", "Hyper-V", "오픈소스",
        r"물리 CPU.*(계속|쉬지)",
    ],
    "hypervisor-types.md": [  # 1.2 종류
        "유형 1", "유형 2", "네이티브", "베어 메탈", "데이터 센터", "KVM", "Hyper-V", "vSphere",
        "2007", "호스트형", "응용 프로그램", "VMware Workstation", "VirtualBox", "개인",
        r"호스트 운영 체제가 일정을",
    ],
    "containers-and-vms.md": [  # 1.3 컨테이너와 VM 비교
        "패키지", "확장성", "이식성", "프로세스", "자원 요청", "용량이 충분한 노드",
        "자체 운영 체제", r"추상화.*복제", "한 가지 유형의 운영 체제", "리눅스만", "대안", "보완",
    ],
}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_fact_of_the_source_is_in_its_chapter(chapter):
    text = re.sub(r"\s+", " ", (BOOK / chapter).read_text().replace("**", ""))
    missing = [fact for fact in FACTS[chapter] if not re.search(fact, text)]
    assert not missing, f"{chapter} does not say: {missing}"


def test_no_sentence_is_copied_from_the_source():
    """Mirror the source's facts, not its sentences: no 25-character run of it is reused."""
    seed = Path(__file__).resolve().parents[2] / "shared" / "seed" / "hypervisor-and-container.md"
    if not seed.exists():
        pytest.skip("the source document is not beside this checkout")
    source = re.sub(r"\s+", " ", seed.read_text())
    book = re.sub(r"\s+", " ", " ".join((BOOK / c).read_text() for c in CHAPTERS))
    runs = {source[i:i + 25] for i in range(0, len(source) - 25)
            if re.search(r"[가-힣]{4}", source[i:i + 25])}
    copied = sorted(run for run in runs if run in book)
    assert not copied, f"sentences copied from the source: {copied[:5]}"


def test_every_chapter_ends_with_review_questions_and_hidden_answers():
    for chapter in CHAPTERS + ["deeper.md"]:
        text = (BOOK / chapter).read_text()
        assert "## 복습 문제" in text, chapter
        assert ":class: dropdown" in text.split("## 복습 문제", 1)[1], chapter
