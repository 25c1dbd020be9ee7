#!/usr/bin/env bash
# Set up (first run only) and run the main job: `fico-itr demo`, a text-only stand-in evaluated on the real COCO 5K test
# captions that ship inside the package (no download). Installs the package with the `plots` extra only.
EXTRAS=plots source "$(dirname "$0")/env.sh"
exec .venv/bin/fico-itr demo "$@"
