#!/usr/bin/env bash
# Regenerates the key reference in docs/config.md from `qtrain --print-config-reference`
# (the part between the GENERATED markers); tests/config/test_print.cpp checks it is current.
# Usage: scripts/gen-config-doc.sh [path/to/qtrain]   (default: build/qtrain)
set -euo pipefail
cd "$(dirname "$0")/.."
qtrain="${1:-build/qtrain}"
doc=docs/config.md
begin='<!-- BEGIN GENERATED: qtrain --print-config-reference -->'
end='<!-- END GENERATED -->'

[[ -x "$qtrain" ]] || { echo "gen-config-doc: $qtrain not found; build first or pass its path" >&2; exit 2; }
grep -qxF "$begin" "$doc" && grep -qF "$end" "$doc" || { echo "gen-config-doc: markers missing in $doc" >&2; exit 2; }

reference="$(mktemp)"
trap 'rm -f "$reference" "$doc.tmp"' EXIT
"$qtrain" --print-config-reference > "$reference"
awk -v begin="$begin" -v end="$end" -v reference="$reference" '
  $0 == begin { print; while ((getline line < reference) > 0) print line; skipping = 1; next }
  index($0, end) == 1 { skipping = 0 }
  !skipping { print }
' "$doc" > "$doc.tmp"
mv "$doc.tmp" "$doc"
echo "gen-config-doc: updated $doc"
