#!/bin/sh
# Seeds the fuzz corpora from the RFC 4475/5118 torture messages (tests/conformance).
# corpus/ is git-ignored: re-run this after a fresh checkout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
conf="$here/../../../tests/conformance"
mkdir -p "$here/corpus/parse" "$here/corpus/framer"
for f in "$conf"/rfc4475/* "$conf"/rfc5118/*; do
    [ -f "$f" ] || continue
    name=$(basename "$(dirname "$f")")-$(basename "$f")
    # RFC 5118 files are archived with bare LF: seed both forms.
    cp "$f" "$here/corpus/parse/$name"
    case "$f" in
        */rfc5118/*) sed 's/$/\r/' "$f" > "$here/corpus/parse/$name.crlf" ;;
    esac
    # framer input: a mode byte, then the message in 200-byte reads (length byte 199).
    {
        printf '\000'
        split -b 200 --filter='printf "\307"; cat' "$f"
    } > "$here/corpus/framer/$name"
done
echo "seeded $(ls "$here/corpus/parse" | wc -l) parse and $(ls "$here/corpus/framer" | wc -l) framer inputs"
