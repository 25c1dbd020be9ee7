#!/usr/bin/env bash
# Set up (first run only) and run the main job: `fico-itr demo` on the embedded synthetic COCO-5K-shaped input.
EXTRAS=plots source "$(dirname "$0")/env.sh"
exec .venv/bin/fico-itr demo "$@"
