#!/usr/bin/env bash
# Runs parts of the full mutation scope one after another (stryker.config.mjs PARTS) and
# records each in docs/mutation/<part>.json (scripts/mutation-score.mjs). Long: see
# docs/testing.md for the times measured here.
#   scripts/mutate-parts.sh [--concurrency N] part-core part-credentials …
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=2
if [[ "${1:-}" == "--concurrency" ]]; then concurrency="$2"; shift 2; fi
[[ $# -gt 0 ]] || { echo "usage: $0 [--concurrency N] PART…" >&2; exit 2; }
for part in "$@"; do
  commit=$(git rev-parse --short HEAD)
  dirty=$(git status --porcelain -- src | wc -l)
  start=$(date +%s)
  echo "== $part at $commit ($dirty uncommitted source files), concurrency $concurrency, $(date -u +%FT%TZ)"
  LEASH_MUTATE="$part" npx stryker run --concurrency "$concurrency" --reporters json,html,progress-append-only
  end=$(date +%s)
  printf '{"measuredAt":"%s","durationSeconds":%d,"concurrency":%d,"commit":"%s","uncommittedSources":%d}\n' \
    "$(date -u -d "@$start" +%FT%TZ)" $((end - start)) "$concurrency" "$commit" "$dirty" > "reports/mutation/$part.meta.json"
  node scripts/mutation-score.mjs record "$part"
done
