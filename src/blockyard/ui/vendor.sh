#!/usr/bin/env bash
# Regenerates the vendored front-end libraries from the npm registry (pinned versions):
#   static/vendor/codemirror/  the code editor
#   static/vendor/marked/      Markdown -> HTML for markdown blocks
#   static/vendor/dompurify/   sanitises that HTML before it is shown
#   testing/axe-core/          accessibility checks run by the browser tests (not served)
# Plotly is not vendored: the UI serves the plotly.min.js inside the installed `plotly`
# Python package (route /static/vendor/plotly.min.js).
set -euo pipefail
CODEMIRROR_VERSION=5.65.21
MARKED_VERSION=18.3.0
DOMPURIFY_VERSION=3.5.0
AXE_VERSION=4.14.1
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/static/vendor/codemirror"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "codemirror@$CODEMIRROR_VERSION" >/dev/null && tar xzf "codemirror-$CODEMIRROR_VERSION.tgz")
pkg="$tmp/package"
rm -rf "$dest" && mkdir -p "$dest"
cp "$pkg/LICENSE" "$dest/LICENSE"
cp "$pkg/lib/codemirror.js" "$pkg/lib/codemirror.css" "$dest/"
cp "$pkg/mode/python/python.js" "$pkg/mode/yaml/yaml.js" "$pkg/mode/sql/sql.js" "$pkg/mode/markdown/markdown.js" "$dest/"
cp "$pkg/addon/edit/matchbrackets.js" "$pkg/addon/edit/closebrackets.js" "$pkg/addon/selection/active-line.js" "$dest/"
echo "codemirror@$CODEMIRROR_VERSION" > "$dest/VERSION"
du -sh "$dest"

# fetch <package> <version>: unpacks into $tmp/<package>/package
fetch() {
  mkdir -p "$tmp/$1"
  (cd "$tmp/$1" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
}
fetch marked "$MARKED_VERSION"
rm -rf "$here/static/vendor/marked" && mkdir -p "$here/static/vendor/marked"
cp "$tmp/marked/package/lib/marked.esm.js" "$tmp/marked/package/LICENSE" "$here/static/vendor/marked/"
echo "marked@$MARKED_VERSION" > "$here/static/vendor/marked/VERSION"
fetch dompurify "$DOMPURIFY_VERSION"
rm -rf "$here/static/vendor/dompurify" && mkdir -p "$here/static/vendor/dompurify"
cp "$tmp/dompurify/package/dist/purify.es.mjs" "$tmp/dompurify/package/LICENSE" "$here/static/vendor/dompurify/"
echo "dompurify@$DOMPURIFY_VERSION" > "$here/static/vendor/dompurify/VERSION"
fetch axe-core "$AXE_VERSION"
rm -rf "$here/testing/axe-core" && mkdir -p "$here/testing/axe-core"
cp "$tmp/axe-core/package/axe.min.js" "$tmp/axe-core/package/LICENSE" "$tmp/axe-core/package/LICENSE-3RD-PARTY.txt" "$here/testing/axe-core/"
echo "axe-core@$AXE_VERSION" > "$here/testing/axe-core/VERSION"
du -sh "$here/static/vendor/marked" "$here/static/vendor/dompurify" "$here/testing/axe-core"
