# The two commands a newcomer needs (see README):
#   make lab    set up, then run the Hub on the embedded default against a local Proxmox simulator
#   make test   set up (Python deps, PostgreSQL, Redis), start the servers, lint, type-check, test
.PHONY: lab test setup lint deploy-check typecheck pytest bench bench-cli clean

lab: setup
	.venv/bin/hubctl lab $(LAB_ARGS)

setup:
	scripts/setup.sh

test:
	scripts/setup.sh --system
	scripts/services.sh start
	@status=0; \
	  . .run/services.env; \
	  $(MAKE) --no-print-directory lint deploy-check typecheck pytest || status=$$?; \
	  scripts/services.sh stop; \
	  exit $$status

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-cache

# deploy/'s monitoring files, by their own tool (the pytest suite also checks them against the registry).
deploy-check:
	promtool check rules deploy/prometheus/hub-rules.yml
	cd deploy/prometheus && promtool test rules hub-rules.test.yml

typecheck:
	.venv/bin/pyright

pytest:
	CI=$${CI:-true} .venv/bin/pytest $(PYTEST_ARGS)

bench: setup
	.venv/bin/python -m benchmarks.checkpoint --write docs/benchmarks-checkpoint.md

# hubctl start-up and long lists against a bare typer app (and the code before issue 9's CLI work).
bench-cli: setup
	.venv/bin/python -m benchmarks.cli_startup --runs 7 --before 3867db5 --write docs/performance.md

clean:
	scripts/services.sh stop || true
	rm -rf .venv .uv .run
