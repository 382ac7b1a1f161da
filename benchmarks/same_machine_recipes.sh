#!/bin/bash
# Issue 15, "the zero-config command in at most 60% of the current recipes' wall time on the same machine":
# the hand-written recipes as they were before the issue (commit c3f5ff3^: its code and its configs/bccd.yaml and
# configs/raccoon.yaml) against today's zero-config command, one job at a time, back to back, BCCD pair first.
#
#   benchmarks/same_machine_recipes.sh [OUT [RUN...]]      (from the project root; OUT defaults to runs/same)
#
# RUN is recipe:NAME or zero:NAME (NAME bccd or raccoon); by default all four, in the order
# recipe:bccd zero:bccd zero:raccoon recipe:raccoon.
#
# Start and end of each run (seconds since the epoch, ISO time, load average) go to OUT/times.log, each run's
# output to OUT/NAME.log, its run directory to OUT/NAME. Needs ../shared (datasets and the ImageNet backbone) and
# about two hours on 2 cores. The old code runs from a `git archive` of its src/ ahead of the editable install,
# as benchmarks/cpu_speed.py does, without the allocator variables today's code sets.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/same}
shift $(( $# > 0 ? 1 : 0 ))
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(recipe:bccd zero:bccd zero:raccoon recipe:raccoon)
BEFORE_REF='c3f5ff3^'
WEIGHTS=../shared/weights/mobilenet_v2_imagenet.pth
OLD=$(mktemp -d)
trap 'rm -rf "$OLD"' EXIT
mkdir -p "$OUT" "$OLD/configs"
git archive "$BEFORE_REF" src | tar -x -C "$OLD"
for name in bccd raccoon; do git show "$BEFORE_REF:configs/$name.yaml" > "$OLD/configs/$name.yaml"; done

stamp() { echo "$1 $(date +%s) $(date -Is) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/times.log"; }
recipe() {  # NAME: the pre-issue code on its own configs/NAME.yaml
  stamp "start ${1}_recipe"
  rc=0
  env -u LD_PRELOAD -u THP_MEM_ALLOC_ENABLE -u SSDLITE_RELAUNCHED PYTHONPATH="$OLD/src" .venv/bin/python -m ssdlite \
    train --config "$OLD/configs/$1.yaml" --out "$OUT/${1}_recipe" > "$OUT/${1}_recipe.log" 2>&1 || rc=$?
  stamp "end ${1}_recipe rc=$rc"
}
zero_config() {  # NAME: today's code, only the data, the output and (offline) the backbone file
  stamp "start ${1}_zero"
  rc=0
  .venv/bin/ssdlite train --data "../shared/datasets/$1" --out "$OUT/${1}_zero" --backbone-weights "$WEIGHTS" \
    > "$OUT/${1}_zero.log" 2>&1 || rc=$?
  stamp "end ${1}_zero rc=$rc"
}

for run in "${RUNS[@]}"; do
  case "$run" in
    recipe:bccd|recipe:raccoon) recipe "${run#*:}" ;;
    zero:bccd|zero:raccoon) zero_config "${run#*:}" ;;
    *) echo "unknown run '$run': recipe:bccd, recipe:raccoon, zero:bccd or zero:raccoon" >&2; exit 2 ;;
  esac
done
stamp done
