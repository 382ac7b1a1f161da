# The README's two commands: `make demo` and `make test`. Both create .venv from nothing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: the demo needs the library alone; the tests also need the test extras (the export runtimes,
# the server, Playwright), which take minutes to install that a first `make demo` should not wait for.
BASE := $(VENV)/.installed-base
STAMP := $(VENV)/.installed
# MediaPipe Tasks in an environment of its own: it pulls opencv-contrib-python, which the project's environment does
# not take. tests/deploy/test_mediapipe.py runs MediaPipe's ObjectDetector there (a subprocess) on the exported files.
MEDIAPIPE_VENV := .venv-mediapipe
MEDIAPIPE_STAMP := $(MEDIAPIPE_VENV)/.installed

.PHONY: venv chromium mediapipe mediapipe-web test demo clean

$(BASE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e .
	@# tcmalloc (Debian's libtcmalloc-minimal4): the ssdlite program preloads it, about 2x faster CPU training
	@# (src/ssdlite/cli/_cpu.py); installed where this runs as root with apt-get, otherwise the program falls back.
	@ldconfig -p | grep -q libtcmalloc_minimal || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 || \
		  { apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; }; }; } || \
		echo "note: tcmalloc is not installed (Debian/Ubuntu: apt-get install libtcmalloc-minimal4); training runs without it"
	touch $(BASE)

$(STAMP): $(BASE)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

$(MEDIAPIPE_STAMP):
	test -x $(MEDIAPIPE_VENV)/bin/python || $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet mediapipe==1.2.3 numpy==2.4.6 pillow==13.0.0
	touch $(MEDIAPIPE_STAMP)

mediapipe: $(MEDIAPIPE_STAMP)

# The serve tests drive the page in Debian's Chromium (Playwright's own browser download needs a network this
# project does not have); installed where this runs as root with apt-get, otherwise that one test skips, saying why.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; }; } || \
		echo "note: chromium is not installed (Debian/Ubuntu: apt-get install chromium); the browser test of ssdlite serve will skip"

# MediaPipe's web files (npm @mediapipe/tasks-vision, the version ssdlite.deploy.runtimes.web pins), fetched once with
# the product's own fetch, for the test of `ssdlite export --format web`; without npm that test skips, saying why.
MEDIAPIPE_WEB := $(VENV)/mediapipe-web/package/vision_bundle.mjs
$(MEDIAPIPE_WEB): $(BASE)
	@if command -v npm >/dev/null; then $(BIN)/python -c "from pathlib import Path; from ssdlite.deploy.runtimes.web import \
		fetch_mediapipe; fetch_mediapipe(Path('$(VENV)/mediapipe-web'))"; \
	else echo "note: npm is not installed (Debian/Ubuntu: apt-get install npm); the web export test will skip"; fi

mediapipe-web: $(MEDIAPIPE_WEB)

# One pytest-xdist worker per core, each on one thread (tests/conftest.py), a test file per worker at a time (the
# session-scoped exports of a file are made once): most of the suite's time is single-threaded Python (the runtimes'
# exporters, the serve tests), so two workers take about 0.6x of one worker on two threads.
# The 20 slowest tests are listed at the end: the suite must stay under 15 minutes on 2 cores.
test: $(STAMP) $(MEDIAPIPE_STAMP) chromium mediapipe-web
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n auto --dist loadfile --durations=20 tests

demo: $(BASE)
	$(BIN)/ssdlite demo --out runs/demo

clean:
	rm -rf $(VENV) $(MEDIAPIPE_VENV) runs build src/*.egg-info
