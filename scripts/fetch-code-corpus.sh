#!/usr/bin/env bash
# The corpus of the quantization-sensitive GPU teacher (docs/results.md, scripts/gpu-table.sh):
# C source from Debian's linux-source-6.1 (real code, large enough for 100+ tokens per
# parameter), packed small enough to carry to the GPU machine (the device tool carries at
# most 64 MiB), where qdata tokenizes it on 16 cores:
#   .cache/code/code.tar.xz    every *.c and *.h of the kernel tree of at most 64 KiB that is
#                              valid UTF-8, taken in the order of the SHA-1 of its path (a
#                              sample spread over the whole tree) until BUDGET_MB (default
#                              205) MB of text (xz: about 38 MB); unpacks to code/
#   .cache/code/prose.tar      every 8th kernel documentation file (.rst.gz, by the SHA-1 of
#                              its path) of scripts/fetch-demo-corpus.sh: prose the teacher
#                              never sees, the other domain of the table; unpacks to prose/
#   .cache/code/SOURCE         the package, its version, the files and bytes taken
# Idempotent: skipped when both archives exist. Needs apt-get, dpkg, tar, xz, python3.
# Usage: scripts/fetch-code-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/code budget_mb=${BUDGET_MB:-205}
if [ -f "$out/code.tar.xz" ] && [ -f "$out/prose.tar" ]; then
  echo "fetch-code-corpus: $out/code.tar.xz and $out/prose.tar exist; nothing to do"
  exit 0
fi
scripts/fetch-demo-corpus.sh > /dev/null  # the prose (.cache/corpus/text)
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/qtrain-code.XXXXXX")
trap 'rm -rf "$work"' EXIT
deb=$(ls "$out"/linux-source-6.1_*_all.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  (cd "$out" && apt-get download linux-source-6.1 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  deb=$(ls "$out"/linux-source-6.1_*_all.deb | head -1)
fi
dpkg -x "$deb" "$work/deb"
tar -xJf "$work"/deb/usr/src/linux-source-6.1.tar.xz -C "$work" --wildcards '*.c' '*.h'
python3 - "$work" "$budget_mb" > "$work/list" <<'PY'
import hashlib, os, sys
work, budget = sys.argv[1], float(sys.argv[2]) * 1e6
root = os.path.join(work, "linux-source-6.1")
files = []
for d, _, names in os.walk(root):
    for n in names:
        if n.endswith((".c", ".h")):
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) <= 65536:
                files.append(os.path.relpath(p, work))
files.sort(key=lambda p: hashlib.sha1(p.encode()).hexdigest())
total = 0
for p in files:
    data = open(os.path.join(work, p), "rb").read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        continue
    if total + len(data) > budget:
        break
    total += len(data)
    print(p)
print(f"{total} bytes", file=sys.stderr)
PY
mkdir -p "$work/code"
(cd "$work" && tar -cf - --transform 's,^linux-source-6.1,code,' -T list) | xz -T0 -9 > "$out/code.tar.xz.tmp"
mv "$out/code.tar.xz.tmp" "$out/code.tar.xz"
python3 - > "$work/prose" <<'PY'
import hashlib, os
root = ".cache/corpus/text"
for d, _, names in sorted(os.walk(root)):
    for n in sorted(names):
        p = os.path.relpath(os.path.join(d, n), root)
        if int(hashlib.sha1(p.encode()).hexdigest(), 16) % 8 == 0:
            print(p)
PY
tar -cf "$out/prose.tar.tmp" -C .cache/corpus/text --transform 's,^,prose/,' -T "$work/prose"
mv "$out/prose.tar.tmp" "$out/prose.tar"
{ dpkg-deb -f "$deb" Package Version; echo "code: $(wc -l < "$work/list") files"; echo "prose: $(wc -l < "$work/prose") files"; } > "$out/SOURCE"
cat "$out/SOURCE"; ls -la "$out"/code.tar.xz "$out"/prose.tar
