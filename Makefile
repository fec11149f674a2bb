# The README's two commands: `make book` and `make test`. Both set up .venv first when needed.
VENV ?= .venv
export VENV
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
PY_DIRS := $(wildcard lib tests chapters benchmarks scripts)
NOTEBOOKS := $(patsubst chapters/%.py,executed/%.ipynb,$(wildcard chapters/*.py))

.PHONY: setup test book test-book scorecard other-model lab notebooks bench lint format clean

setup:
	@bash scripts/setup.sh

lint: setup
	ruff check $(PY_DIRS)
	ruff format --check $(PY_DIRS)

format: setup
	ruff format $(PY_DIRS)
	ruff check --fix $(PY_DIRS)

## make test: lint, the library's tests, and every chapter executed with quick=True (checked by nbval).
test: setup
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint && \
	bash scripts/run_chapters.sh prepare && \
	LOCEDIT_PROGRESS=0 python -m pytest tests $(NOTEBOOKS) --nbval-lax -p no:cacheprovider --ignore=tests/browser; \
	status=$$?; echo "make test: $$(( $$(date +%s) - start )) s elapsed"; exit $$status

## make book: execute every chapter at full size (QUICK=True for a fast build) and build the site.
book: setup
	bash scripts/run_chapters.sh execute
	bash scripts/build_book.sh

## make test-book: open every page of the built site (make book first) in headless Chromium; fail on console
## errors, failed or off-site requests, empty figures, raw maths, overflow... Screenshots: book/_build/screenshots/.
test-book: setup
	@bash scripts/setup_browser.sh
	@start=$$(date +%s); \
	LOCEDIT_BOOK_TEST=1 python -m pytest tests/browser -p no:cacheprovider; \
	status=$$?; echo "make test-book: $$(( $$(date +%s) - start )) s elapsed"; exit $$status

## make scorecard: the reproduction scorecard from executed/*.results.json (and other models' runs, results/*/):
## README.md's table (between its scorecard markers) and book/scorecard.md (the book's page; `make book` writes it).
scorecard: setup
	PYTHONPATH=$(CURDIR)/lib python -m locedit.scorecard --results executed --toc book/_toc.yml --chapters chapters \
	  --others results --page book/scorecard.md --readme README.md

## make other-model MODEL=gemma3-270m: the chapters (CHAPTERS="04_circuit_reuse ..." for some) on another model,
## quick unless QUICK=False, into results/$(MODEL)/ (commit it): the scorecard sets its verdicts beside the book's.
other-model: setup
	MODEL=$(MODEL) bash scripts/run_chapters.sh other

## make lab: JupyterLab on the chapters (chapters/*.py open as notebooks through Jupytext; ipywidgets and plotly
## render live). LAB_ARGS="--no-browser --port 8890" passes options on. The kernel imports lib/ of this checkout.
lab: setup
	@python scripts/lab_settings.py
	JUPYTER_CONFIG_PATH=$(CURDIR)/.jupyter PYTHONPATH=$(CURDIR)/lib jupyter lab --ServerApp.root_dir=$(CURDIR) \
	  --LabApp.default_url=/lab/tree/chapters $(LAB_ARGS)

## make notebooks: regenerate notebooks/*.ipynb (committed, no outputs, Colab install cell) from chapters/*.py.
notebooks: setup
	python scripts/notebooks.py write

## make bench: speed against peer libraries (installs the optional peers first).
bench: setup
	python -m pip install -q -r benchmarks/requirements.txt -c requirements.txt
	python benchmarks/patching.py
	python benchmarks/neurons.py
	python benchmarks/rome.py
	python benchmarks/path_patching.py
	python benchmarks/concepts.py
	python benchmarks/circuit_masks.py

clean:
	rm -rf executed book/_build
