#!/usr/bin/env bash
# The Airbyte sweep (issue 14's "Proof"): installs, specs and discovers every package of a list
# through weft only, and prints a Markdown table of outcomes. Not run in CI: it needs PyPI and
# takes about a minute per package.
#
#   tests/tools/airbyte_sweep.sh PACKAGES.txt [WEFT_BINARY] > table.md
#
# PACKAGES.txt holds one PyPI requirement a line (`airbyte-source-x==1.2.3`; `#` comments).
# Packages install into their own cache ($WEFT_SWEEP_CACHE, default a folder under /tmp), so the
# sweep neither uses nor fills the user's. `discover` runs with an empty config: for most
# sources that fails on the missing credentials, which the table shows as the connector's own
# config error (what matters is that the connector ran, and that the error says why).
# WEFT_SWEEP_JOBS packages run at once (default 2).
set -uo pipefail

list=${1:?usage: airbyte_sweep.sh PACKAGES.txt [WEFT_BINARY]}
weft=${2:-target/debug/weft}
weft=$(realpath "$weft")
cache=${WEFT_SWEEP_CACHE:-/tmp/weft-airbyte-sweep-cache}
jobs=${WEFT_SWEEP_JOBS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

# One package: prints its table row.
sweep_one() {
  local pkg=$1 n=$2 dir="$work/$2"
  mkdir -p "$dir/domains/sweep"
  printf 'domain: sweep\nowners: [sweep@example.com]\ndescription: sweep\n' > "$dir/domains/sweep/domain.yaml"
  printf 'version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n' > "$dir/weft.yaml"
  printf 'product: p%s\ndomain: sweep\nowner: sweep@example.com\ndescription: sweep\nsource:\n  connector: airbyte\n  config:\n    package: "%s"\n    catalog_cache: 0s\n    config: {}\nstreams:\n  - name: sweep\n' \
    "$n" "$pkg" > "$dir/domains/sweep/p$n.yaml"
  local w=(env WEFT_CONNECTOR_CACHE="$cache" "$weft" --project "$dir")
  # The error line of a failed command, shortened for the table.
  short() { grep -a '^error: ' "$1" | tail -1 | sed 's/^error: //; s/.*its last error[^:]*: //; s/|/\\|/g' | cut -c1-200; }
  local start=$SECONDS install spec discover python note=""
  if timeout 900 "${w[@]}" connector install "$pkg" > "$dir/install.out" 2> "$dir/install.err"; then
    install="ok ($((SECONDS - start)) s)"
    python=$(sed -n 's/^  python: *\([0-9.]*\) .*/\1/p' "$dir/install.out")
  else
    install="failed ($((SECONDS - start)) s)"; python="-"; note=$(short "$dir/install.err")
  fi
  if timeout 300 "${w[@]}" connector spec sweep/p"$n" > "$dir/spec.out" 2> "$dir/spec.err" \
      && grep -q connectionSpecification "$dir/spec.out"; then
    spec=ok
  else
    spec=failed; [ -z "$note" ] && note=$(short "$dir/spec.err")
  fi
  if timeout 300 "${w[@]}" connector discover sweep/p"$n" > "$dir/discover.out" 2> "$dir/discover.err"; then
    discover="ok, $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$dir/discover.out") streams"
  else
    discover=failed; [ -z "$note" ] && note=$(short "$dir/discover.err")
  fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$pkg" "$install" "$python" "$spec" "$discover" "$note"
}
export -f sweep_one
export work weft cache

echo "| package | install | python | spec | discover (empty config) | first error |"
echo "| --- | --- | --- | --- | --- | --- |"
grep -v '^\s*\(#\|$\)' "$list" | nl -w1 -s' ' | xargs -P "$jobs" -L1 bash -c 'sweep_one "$1" "$0"'
