"""A button on each lab page that opens the lab in the class's JupyterHub.

    make book VMKIT_HUB_URL=https://hub.example.edu VMKIT_HUB_REPO=https://github.com/ORG/REPO

Jupyter Book 1 has this built in (sphinx-book-theme's launch buttons): with
`launch_buttons.jupyterhub_url` and `repository.url` set, every notebook page gets a
"JupyterHub" link to `HUB/hub/user-redirect/git-pull?repo=…&urlpath=lab/tree/REPO/PATH&branch=…`,
which nbgitpuller (installed in the students' environment) answers by cloning or updating the
repository in the student's home and opening the notebook in JupyterLab.

The repository must be the **student copies** (`make assign` writes them to
`_build/student-labs/`; push them as `labs/NN-….ipynb` to a repository of their own), never
this one: the instructor's labs hold the answers and the hidden checks. So VMKIT_HUB_REPO is
required and nothing defaults to this checkout. VMKIT_HUB_BRANCH is `main` unless set.

`python book/_ext/hub_launch.py OUT/_config.yml` (what `make book` runs when VMKIT_HUB_URL is
set) writes the repository's _config.yml with those settings added, its local extensions as
absolute paths, and this module as one more extension; `jupyter-book build --config` takes it
in place of _config.yml. As an extension, this module keeps the launch button on the lab pages
only: the chapters written as MyST notebooks would get one too, pointing at files the
students' repository does not have.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_PREFIX = "labs/"
#: sphinx-book-theme tells the provider from the repository URL's host.
GIT_HOSTS = ("github", "gitlab", "bitbucket")
DEFAULT_BRANCH = "main"


class HubSettingError(ValueError):
    """A hub setting the book cannot build launch buttons from (Korean message)."""


def settings(env=os.environ) -> tuple[str, str, str]:
    """(hub URL, students' repository URL, branch) from VMKIT_HUB_URL, VMKIT_HUB_REPO and
    VMKIT_HUB_BRANCH, checked."""
    hub = env.get("VMKIT_HUB_URL", "").strip().rstrip("/")
    repo = env.get("VMKIT_HUB_REPO", "").strip().rstrip("/")
    branch = env.get("VMKIT_HUB_BRANCH", "").strip() or DEFAULT_BRANCH
    parts = urlsplit(hub)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise HubSettingError(f"VMKIT_HUB_URL은 허브의 주소여야 합니다 "
                              f"(예: https://hub.example.edu): {hub!r}")
    if not repo:
        raise HubSettingError(
            "VMKIT_HUB_REPO가 없습니다: 학생이 받을 실습 저장소(학생용 사본, `make assign`)의 "
            "주소를 주세요 (예: https://github.com/ORG/vmkit-class-labs). 이 저장소의 labs/에는 "
            "정답과 숨은 검사가 있으므로 학생에게 보내지 않습니다.")
    repo = repo.removesuffix(".git")
    parts = urlsplit(repo)
    path = [piece for piece in parts.path.split("/") if piece]
    if (parts.scheme != "https" or len(path) != 2
            or not any(host in parts.netloc.lower() for host in GIT_HOSTS)):
        raise HubSettingError(
            "VMKIT_HUB_REPO는 GitHub, GitLab 또는 Bitbucket 저장소의 https 주소여야 합니다 "
            f"(https://HOST/ORG/REPO): {repo!r}")
    if any(char in branch for char in " ?&#"):
        raise HubSettingError(f"VMKIT_HUB_BRANCH가 브랜치 이름이 아닙니다: {branch!r}")
    return hub, repo, branch


def hub_config(config: dict, hub: str, repo: str, branch: str) -> dict:
    """_config.yml's settings plus the launch buttons; extension paths made absolute."""
    config = copy.deepcopy(config)
    config["launch_buttons"] = {"notebook_interface": "jupyterlab", "jupyterhub_url": hub}
    config["repository"] = {"url": repo, "branch": branch, "path_to_book": ""}
    sphinx = config.setdefault("sphinx", {})
    extensions = {name: str((REPO / path).resolve())
                  for name, path in (sphinx.get("local_extensions") or {}).items()}
    extensions["hub_launch"] = str(Path(__file__).resolve().parent)
    sphinx["local_extensions"] = extensions
    return config


def launch_url(hub: str, repo: str, branch: str, path: str) -> str:
    """The link sphinx-book-theme puts on the page of `path` (e.g. labs/01-….ipynb)."""
    name = repo.rstrip("/").rsplit("/", 1)[1]
    query = urlencode({"repo": repo, "urlpath": f"lab/tree/{name}/{path}", "branch": branch},
                      safe="/")
    return f"{hub}/hub/user-redirect/git-pull?{query}"


def write_config(out: Path, env=os.environ, source: Path = REPO / "_config.yml") -> Path:
    hub, repo, branch = settings(env)
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(hub_config(config, hub, repo, branch), allow_unicode=True,
                                  sort_keys=False), encoding="utf-8")
    return out


def keep_on_lab_pages(app, pagename, templatename, context, doctree) -> None:
    """`html-page-context`, after sphinx-book-theme added the launch buttons (priority 501)."""
    if pagename.startswith(LAB_PREFIX) or "header_buttons" not in context:
        return
    context["header_buttons"] = [button for button in context["header_buttons"]
                                 if button.get("label") != "launch-buttons"]


def setup(app):
    app.connect("html-page-context", keep_on_lab_pages, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("사용법(usage): python book/_ext/hub_launch.py OUT/_config.yml", file=sys.stderr)
        return 2
    try:
        out = write_config(Path(argv[0]))
    except HubSettingError as error:
        print(f"수업 허브 버튼(launch button)을 만들 수 없습니다: {error}", file=sys.stderr)
        return 1
    print(f"수업 허브 버튼: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
