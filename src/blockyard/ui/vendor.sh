#!/usr/bin/env bash
# Regenerates src/blockyard/ui/static/vendor/codemirror/ from the npm registry (pinned).
# Plotly is not vendored: the UI serves the plotly.min.js inside the installed `plotly`
# Python package (route /static/vendor/plotly.min.js).
set -euo pipefail
CODEMIRROR_VERSION=5.65.21
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
