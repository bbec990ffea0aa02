# vmkit 교과서: `make book` builds the book (running the labs for real), `make test` runs
# every test. Both set the machine up first (`make setup`), idempotently.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
VMKIT       := $(BIN)/vmkit
STAMP       := $(VENV)/.installed
# Debian packages the project needs: QEMU, the Docker Engine, BusyBox, a Korean font,
# apt-get download / dpkg-deb for the guest kernel, Chromium for the browser tests, and
# rootless Podman (each student's own engine in class mode, and the tests against it).
SYSTEM_PACKAGES := qemu-system-x86 qemu-system-arm qemu-utils docker.io busybox-static fonts-nanum \
                   ca-certificates chromium chromium-driver python3-venv nodejs poppler-utils \
                   podman uidmap slirp4netns fuse-overlayfs catatonit
PYTEST_ARGS ?=

.PHONY: setup system-packages venv artifacts js-packages class-env book pdf test lab bench assign grade clean

setup: system-packages venv artifacts js-packages

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	lists=$$(ls /var/lib/apt/lists/*_Packages* 2>/dev/null | head -n 1); \
	if [ -z "$$missing" ] && [ -n "$$lists" ]; then echo "시스템 패키지(system packages): 모두 있음"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "root 권한이 필요합니다. 다음 명령을 실행한 뒤 다시 시도하세요:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$$missing"; \
	  exit 1; \
	fi; \
	echo "시스템 패키지 설치:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q && { [ -z "$$missing" ] || apt-get install -y -q --no-install-recommends $$missing; }

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[book,test,grade,hub]'
	@touch $(STAMP)

artifacts: venv
	$(VMKIT) fetch

# The JavaScript the book serves itself (ipywidgets HTML manager, RequireJS, MathJax): the
# exact versions in package-lock.json, checked against its integrity hashes by `npm ci`.
# npm is installed only if missing: Debian's npm package conflicts with a nodejs that bundles
# npm (NodeSource's), so it cannot be in SYSTEM_PACKAGES.
NODE_STAMP  := node_modules/.vmkit-installed
js-packages: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json | system-packages
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "npm이 필요합니다. 다음 명령을 실행한 뒤 다시 시도하세요:"; \
	    echo "  sudo apt-get install -y --no-install-recommends npm"; exit 1; \
	  fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm; }
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# The students' environment for the class hub (deploy/jupyterhub/): a venv of Debian's python3
# with vmkit installed as a copy, the guest artifacts read-only, the server launcher. Needs root.
CLASS_PREFIX ?= /opt/vmkit-class
class-env: venv artifacts
	deploy/jupyterhub/install-class-env.sh $(CLASS_PREFIX)

# --all: every page and the search index are rebuilt, and every lab really runs again.
# VMKIT_HUB_URL=https://hub.example.edu (with VMKIT_HUB_REPO=<the student copies' git
# repository>): each lab page gets a button that opens the lab in that class hub
# (book/_ext/hub_launch.py writes the config with the launch buttons).
VMKIT_HUB_URL ?=
# EDITION=student (default): no solution cells or hidden checks in the pages, the search index
# or the PDF, and the downloadable labs are the student copies. EDITION=instructor: the labs
# whole, for the course's staff only (book/_ext/edition.py).
EDITION     ?= student
book: setup
	$(if $(VMKIT_HUB_URL),VMKIT_HUB_URL='$(VMKIT_HUB_URL)' $(BIN)/python book/_ext/hub_launch.py _build/hub/_config.yml)
	VMKIT_EDITION=$(EDITION) $(VMKIT) engine exec -- $(BIN)/jupyter-book build --warningiserror \
	  --keep-going --all $(if $(VMKIT_HUB_URL),--config _build/hub/_config.yml) .

# The whole book as one PDF: the singlehtml build, printed by Debian's Chromium (Playwright).
PDF         := _build/pdf/vmkit-textbook.pdf
pdf: setup
	VMKIT_EDITION=$(EDITION) $(VMKIT) engine exec -- $(BIN)/jupyter-book build --warningiserror \
	  --keep-going --all --builder singlehtml .
	$(BIN)/python book/_ext/print_pdf.py _build/singlehtml $(PDF)

test: setup class-env
	$(VMKIT) engine exec -- $(BIN)/python -m pytest $(PYTEST_ARGS)

lab: setup
	$(VMKIT) engine exec -- $(BIN)/jupyter-lab --ip=127.0.0.1 --no-browser \
	  $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir=labs

# The student version of every lab: solutions as stubs, hidden checks left out.
assign: setup
	$(VMKIT) assign labs _build/student-labs

# Grade a class: SUBMISSIONS/<student>/<lab>.ipynb -> _build/grades/{grades.csv,grades-summary.csv,feedback/}.
# GRADE_ARGS adds options, e.g. GRADE_ARGS="--scheduler tcp://HOST:8786" or "--workers 2".
SUBMISSIONS ?= submissions
GRADE_ARGS  ?=
grade: setup
	$(VMKIT) engine exec -- $(VMKIT) grade $(SUBMISSIONS) --out _build/grades/grades.csv $(GRADE_ARGS)

bench: setup class-env
	$(VMKIT) engine exec -- $(BIN)/python benchmarks/report.py --json bench-results.json

clean:
	rm -rf _build .pytest_cache
