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


LABS = Path(__file__).resolve().parent.parent / "labs"


def reader_text() -> dict[str, str]:
    """Every chapter and lab as the reader meets it (lab notebooks: their cells' sources)."""
    import json

    texts = {p.name: p.read_text() for p in BOOK.rglob("*.md")}
    for lab in LABS.glob("*.ipynb"):
        cells = json.loads(lab.read_text())["cells"]
        texts[lab.name] = "\n".join("".join(c["source"]) for c in cells)
    return {name: re.sub(r"\s+", " ", text) for name, text in texts.items()}


#: Corrected statements (issue: "a textbook a professor would adopt"): what must be said, where.
SAYS = {
    "hypervisor-types.md": [
        r"\| \*\*유형 1\*\*.*Xen", r"\| \*\*유형 2\*\*.*VirtualBox",  # the two-by-two table
        "에뮬레이션", "하드웨어 지원 가상화", "dom0", "루트 파티션", "ISCA 2016", "Popek|포펙",
        r"\(유형 2\) 생기는 것이 아닙니다",
    ],
    "hypervisor.md": [r"thread=single", "ALL CPUs/TCG", "제한된 직접 실행", "빌려 씁니다", "장치 에뮬레이션"],
    "containers-and-vms.md": ["자원 한도", "memory.max", "cpu.weight", r"struct page", "머신 유형"],
    "deeper.md": ["seccomp", "AppArmor", "SnapStart", "mmap", "난수", "qmp_capabilities", "cgroup v2",
                  r"시간\(time\)", "반가상화", "블록", "보조 UID"],
    "03-hypervisor-types.ipynb": ["에뮬레이션의 값", "ISCA 2016", "Xen"],
}

#: Claims the book used to make and must not make again.
NEVER = {
    r"VM 탈출[ (]*VM exit": "VM exit is not an escape: write 'VM exit(게스트→하이퍼바이저 전환)'",
    r"원문": "the reader does not have the source document",
    r"유형 2의 (자리|모습)|유형 1의 자리": "type 1/2 is where a hypervisor sits, not how it runs code",
    r"vCPU는 호스트의 스레드입니다": "one vCPU is one thread only under KVM or multi-threaded TCG",
    r"호스트의 운영 체제와 상관없이 옮길": "a saved VM state needs a compatible machine type and CPU model",
}


@pytest.mark.parametrize("name", sorted(SAYS))
def test_corrected_statements_are_said(name):
    text = reader_text()[name]
    missing = [fact for fact in SAYS[name] if not re.search(fact, text)]
    assert not missing, f"{name} does not say: {missing}"


@pytest.mark.parametrize("pattern", sorted(NEVER))
def test_wrong_statements_are_gone(pattern):
    found = [name for name, text in reader_text().items() if re.search(pattern, text)]
    assert not found, f"{NEVER[pattern]}: {found}"


#: One spelling per term across the chapters, the labs' text and the README's Korean part; the
#: glossary (book/appendix/glossary.md) is the reference. Preferred spelling: other spellings.
TERMS = {
    "운영 체제": [r"운영체제"],
    "리눅스": [r"(?<![A-Za-z`/])Linux(?![A-Za-z`®])"],
    "가상 머신": [r"가상머신"],
    "스냅샷": [r"스냅숏"],
    "아키텍처": [r"아키텍쳐"],
    "네임스페이스": [r"네임 스페이스"],
    "Podman": [r"포드맨"],
    "루트리스": [r"로트리스"],
}


def prose() -> dict[str, str]:
    """What a reader reads as prose: chapters, the labs' Markdown cells, the README's Korean part."""
    import json

    texts = {p.name: p.read_text() for p in BOOK.rglob("*.md")}
    for lab in LABS.glob("*.ipynb"):
        cells = json.loads(lab.read_text())["cells"]
        texts[lab.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    readme = (BOOK.parent / "README.md").read_text()
    texts["README.md"] = readme.split("## Developer guide", 1)[0]
    return texts


@pytest.mark.parametrize("term", sorted(TERMS))
def test_one_spelling_per_term(term):
    glossary = (BOOK / "appendix" / "glossary.md").read_text()
    found = {name: sorted(set(m.group(0) for v in TERMS[term] for m in re.finditer(v, text)))
             for name, text in prose().items()}
    found = {name: spellings for name, spellings in found.items() if spellings}
    assert not found, f"write {term!r}: {found}"
    assert term in glossary or any(term in text for text in prose().values())


def test_the_spelling_check_finds_a_variant():
    assert re.search(TERMS["리눅스"][0], "Linux 커널") and not re.search(TERMS["리눅스"][0], "SELinux")
