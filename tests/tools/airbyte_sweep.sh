#!/usr/bin/env bash
# The Airbyte sweep (issue 14's "Proof"): every package of the given lists run directly (its
# own entry point in its own virtualenv, tests/tools/airbyte_direct.py) and through weft
# (`weft connector install/spec/discover`, tests/tools/airbyte_weft.py), compared step by step
# in a Markdown table (tests/tools/airbyte_sweep_table.py). Not run in CI: it needs PyPI and
# takes minutes per package.
#
#   tests/tools/airbyte_sweep.sh LIST... > table.md     (WEFT_BIN: default target/debug/weft)
#
# A list holds one PyPI requirement a line (`airbyte-source-x==1.2.3`; `#` comments); a line
# `REQUIREMENT sync CONFIG_JSON` also syncs every stream (full refresh) with that config on
# both sides and compares the rows per stream (for sources that read offline).
# Virtualenvs and results are cached under $WEFT_SWEEP_CACHE (default
# /tmp/airbyte-sweep-cache): a rerun only runs what has no result yet (delete
# results/ to run the steps again, quickly: the virtualenvs stay). `discover` runs with an
# empty config: most sources then fail with their own config error, which both sides must
# tell alike. WEFT_SWEEP_JOBS packages run at once (default 2); WEFT_SWEEP_SIDES=direct runs
# the direct side only.
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: airbyte_sweep.sh LIST..." >&2; exit 2; }
tools=$(dirname "$(realpath "$0")")
weft=$(realpath "${WEFT_BIN:-target/debug/weft}")
cache=${WEFT_SWEEP_CACHE:-/tmp/airbyte-sweep-cache}
jobs=${WEFT_SWEEP_JOBS:-2}
sides=${WEFT_SWEEP_SIDES:-direct weft}
mkdir -p "$cache/results/direct" "$cache/results/weft"

# One package, both sides (direct first: pip's cache then serves weft's install).
sweep_one() {
  local req=$1 config=""
  [ "${2:-}" = sync ] && config=$3
  for side in $sides; do
    local out="$cache/results/$side/$req.json"
    [ -s "$out" ] && continue
    if [ "$side" = direct ]; then
      python3 "$tools/airbyte_direct.py" "$req" "$cache" ${config:+"$config"} > "$out.tmp"
    else
      python3 "$tools/airbyte_weft.py" "$req" "$cache" "$weft" ${config:+"$config"} > "$out.tmp"
    fi && [ -s "$out.tmp" ] && mv "$out.tmp" "$out"
    echo "$(date -u +%H:%M:%S) $side $req: $(cat "$out" 2>/dev/null || echo failed)" >&2
  done
}
export -f sweep_one
export tools weft cache sides

for list in "$@"; do
  grep -v '^\s*\(#\|$\)' "$list"
done | while IFS= read -r line; do
  req=${line%% *}; rest=${line#"$req"}; rest=${rest# }
  mode=${rest%% *}; config=${rest#"$mode"}; config=${config# }
  printf '%s\0%s\0%s\0' "$req" "$mode" "$config"
done | xargs -0 -n 3 -P "$jobs" bash -c 'sweep_one "$0" "$1" "$2"'

python3 "$tools/airbyte_sweep_table.py" "$cache" "$@"
