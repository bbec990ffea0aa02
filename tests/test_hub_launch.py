"""The class hub's launch buttons: `make book VMKIT_HUB_URL=… VMKIT_HUB_REPO=…`.

`make book` passes a generated config (book/_ext/hub_launch.py) only when VMKIT_HUB_URL is
set; the config carries Jupyter Book's `launch_buttons.jupyterhub_url` and `repository.url`
(the students' repository, never this one), and the lab pages, not the chapters, get the
nbgitpuller link. The last test builds a two-page book with the real Jupyter Book and
sphinx-book-theme (seconds, nothing executed); the full book's lab page is checked in
tests/test_book.py, whose one build uses the same config.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))

import hub_launch  # noqa: E402  (book/_ext)

HUB = "https://hub.example.edu"
STUDENTS = "https://github.com/example/vmkit-class-labs"
ENV = {"VMKIT_HUB_URL": HUB, "VMKIT_HUB_REPO": STUDENTS}
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


def make_book_commands(*assignments: str) -> str:
    """What `make book` would run (`make -n`, setup taken as done), continuation lines joined."""
    done = subprocess.run(["make", "-n", "-o", "setup", "book", *assignments], cwd=REPO,
                          capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"})
    return re.sub(r"\\\n\s*", " ", done.stdout)


def test_make_book_passes_the_hub_config_only_when_the_hub_is_set():
    plain = make_book_commands()
    assert "jupyter-book build" in plain
    assert "hub_launch" not in plain and "--config" not in plain, plain
    hub = make_book_commands(f"VMKIT_HUB_URL={HUB}", f"VMKIT_HUB_REPO={STUDENTS}")
    writes = re.search(r"(\S+/python) book/_ext/hub_launch\.py (\S+)", hub)
    assert writes, hub
    build = re.search(r"jupyter-book build .*--config (\S+) \.\s*$", hub, re.M)
    assert build and build.group(1) == writes.group(2), hub
    assert hub.index("hub_launch.py") < hub.index("jupyter-book build"), "config written first"


def test_the_book_itself_has_no_launch_buttons():
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    assert "launch_buttons" not in config and "repository" not in config


def test_the_hub_config_is_the_book_config_plus_the_launch_button(tmp_path):
    out = hub_launch.write_config(tmp_path / "hub" / "_config.yml", env=ENV)
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert config["launch_buttons"] == {"notebook_interface": "jupyterlab",
                                        "jupyterhub_url": HUB}
    assert config["repository"] == {"url": STUDENTS, "branch": "main", "path_to_book": ""}
    base = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    extensions = config["sphinx"].pop("local_extensions")
    assert set(extensions) == set(base["sphinx"].pop("local_extensions")) | {"hub_launch"}
    assert all(Path(path).is_absolute() and (Path(path) / f"{name}.py").is_file()
               for name, path in extensions.items()), extensions
    assert {k: v for k, v in config.items() if k not in ("launch_buttons", "repository")} == base

    # Jupyter Book's own translation: the theme options sphinx-book-theme reads.
    from jupyter_book.config import get_final_config
    sphinx, _ = get_final_config(user_yaml=out, cli_config={"latex_individualpages": False},
                                 sourcedir=REPO, raise_on_invalid=True)
    theme = sphinx["html_theme_options"]
    assert theme["launch_buttons"]["jupyterhub_url"] == HUB
    assert theme["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert theme["repository_url"] == STUDENTS and theme["repository_branch"] == "main"


@pytest.mark.parametrize("env, says", [
    ({}, "VMKIT_HUB_URL"),
    ({"VMKIT_HUB_URL": "hub.example.edu", "VMKIT_HUB_REPO": STUDENTS}, "VMKIT_HUB_URL"),
    ({"VMKIT_HUB_URL": HUB}, "정답과 숨은 검사"),
    ({"VMKIT_HUB_URL": HUB, "VMKIT_HUB_REPO": "https://git.example.edu/org/labs"}, "GitHub"),
    ({"VMKIT_HUB_URL": HUB, "VMKIT_HUB_REPO": "https://github.com/org"}, "ORG/REPO"),
])
def test_bad_hub_settings_are_refused_in_korean(tmp_path, env, says):
    with pytest.raises(hub_launch.HubSettingError, match=says):
        hub_launch.write_config(tmp_path / "_config.yml", env=env)
    assert not (tmp_path / "_config.yml").exists()


def test_the_script_fails_without_the_students_repository(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "book" / "_ext" / "hub_launch.py"),
                           str(tmp_path / "_config.yml")], capture_output=True, text=True,
                          env={"VMKIT_HUB_URL": HUB, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1 and "VMKIT_HUB_REPO" in done.stderr
    assert not (tmp_path / "_config.yml").exists()


def test_launch_url_is_nbgitpuller_for_the_students_repository():
    url = hub_launch.launch_url(HUB, STUDENTS, "main",
                                "labs/01-vm-and-container.ipynb")
    assert url == (f"{HUB}/hub/user-redirect/git-pull?repo=https%3A//github.com/example/"
                   "vmkit-class-labs&urlpath=lab/tree/vmkit-class-labs/labs/"
                   "01-vm-and-container.ipynb&branch=main")
    assert hub_launch.settings({**ENV, "VMKIT_HUB_REPO": STUDENTS + ".git/"})[1] == STUDENTS


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a" and dict(attrs).get("href"):
            self.hrefs.append(dict(attrs)["href"])


def hrefs(page: Path) -> list[str]:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.hrefs


def notebook(cells: list[str]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "cells": [{"cell_type": "markdown", "id": f"c{i}", "metadata": {}, "source": text}
                      for i, text in enumerate(cells)]}


@pytest.mark.timeout(300)
def test_a_lab_page_gets_the_hub_button_and_a_chapter_notebook_does_not(tmp_path):
    """A small book laid out like this one, built with -W by the installed Jupyter Book."""
    source = tmp_path / "src"
    (source / "labs").mkdir(parents=True)
    (source / "book").mkdir()
    (source / "book" / "intro.md").write_text("# 소개\n\n허브 버튼 시험.\n", encoding="utf-8")
    (source / "book" / "chapter.md").write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        "# 장\n\n```{code-cell} ipython3\n1 + 1\n```\n", encoding="utf-8")
    (source / "labs" / "01-lab.ipynb").write_text(
        json.dumps(notebook(["# 실습 01\n\n버튼이 있어야 합니다."])), encoding="utf-8")
    (source / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapter\n"
        "  - file: labs/01-lab\n", encoding="utf-8")
    config = hub_launch.hub_config({"title": "허브 버튼", "only_build_toc_files": True,
                                    "execute": {"execute_notebooks": "force"},
                                    "sphinx": {"config": {"language": "ko"}}},
                                   *hub_launch.settings(ENV))
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config, allow_unicode=True),
                                          encoding="utf-8")
    done = subprocess.run([str(JUPYTER_BOOK), "build", str(source), "--config",
                           str(tmp_path / "_config.yml"), "--path-output", str(tmp_path / "out"),
                           "--warningiserror", "--keep-going", "--all"],
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = tmp_path / "out" / "_build" / "html"
    lab = hrefs(html / "labs" / "01-lab.html")
    expected = hub_launch.launch_url(HUB, STUDENTS, "main", "labs/01-lab.ipynb")
    assert expected in lab, [href for href in lab if "git-pull" in href]
    for page in ("book/chapter.html", "book/intro.html"):
        assert not [href for href in hrefs(html / page) if "git-pull" in href], page
