#!/usr/bin/env bash
# The kiban demo: one stage per step, each writing an artifact directory under out/demo/.
# Usage: scripts/demo.sh [DEBIAN_DOC_PACKAGE...]      (DOCS=/path/to/folder to curate your own documents)
set -euo pipefail
cd "$(dirname "$0")/.."
KIBAN=.venv/bin/kiban
OUT="${KIBAN_DEMO_OUT:-out/demo}"
mkdir -p "$OUT"

echo "== step 1/1: curate real Japanese text into a corpus with provenance =="
sources=()
if [ -n "${DOCS:-}" ]; then
    sources+=("$DOCS")
else
    bash scripts/install-debian-docs.sh "$@"
    for pkg in "$@"; do
        if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            sources+=("debian:$pkg")
        else
            echo "kiban: $pkg is not installed; skipping it" >&2
        fi
    done
fi
if [ ${#sources[@]} -eq 0 ]; then
    echo "kiban: no Debian documentation packages here. Curate a folder of your own documents:" >&2
    echo "    DOCS=/path/to/documents make demo" >&2
    echo "    .venv/bin/kiban curate /path/to/documents --out $OUT/corpus --license CC-BY-4.0" >&2
    exit 2
fi
"$KIBAN" curate "${sources[@]}" --out "$OUT/corpus" --overwrite
"$KIBAN" lineage "$OUT/corpus" > /dev/null && echo "lineage verified: $OUT/corpus/manifest.json"
echo
echo "Done. Open $OUT/corpus/datacard.md for the funnel and the licence table;"
echo "the documents are in $OUT/corpus/part-*.parquet, the rejected ones (with their rule) in $OUT/corpus/rejected/."
