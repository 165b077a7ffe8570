#!/usr/bin/env bash
# Documentation check (cheap; run by .ci/run before the tests). Fails when
#   1. a tracked file refers to a path outside the repository: a `shared` directory beside the
#      checkout (../shared) or an absolute path into /work (where checkouts live on the
#      development machines); the project must stand alone;
#   2. a relative Markdown link or image in README.md or docs/*.md points to a file that does not
#      exist (http(s) and mailto links and pure #anchors are not checked).
set -euo pipefail
cd "$(dirname "$0")/.."

# The link check needs python3 (Debian's minimal images lack it; installed as the other scripts do).
if ! command -v python3 > /dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3 > /dev/null
fi

# docs/trial-keys.md is generated from the code (the trial schema) by a separate step; links to it
# are allowed while it is missing.
allowed_missing=("docs/trial-keys.md")

status=0

# 1. References to paths outside the repository. This script names the patterns, so it is skipped.
outside='(\.\./)+shared([/`"'"'"' ]|$)|(^|[^A-Za-z0-9_.~-])/work/'
if hits=$(git grep -n -I -E "$outside" -- . ':(exclude)scripts/check-docs.sh'); then
  echo "check-docs: references to paths outside the repository:" >&2
  echo "$hits" >&2
  status=1
fi

# 2. Relative links in README.md and docs/*.md.
python3 - "${allowed_missing[@]}" <<'EOF' || status=1
import os, re, sys, glob
allowed = set(sys.argv[1:])
files = ["README.md"] + sorted(glob.glob("docs/*.md")) + sorted(glob.glob("docs/**/*.md", recursive=True))
link = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
bad = 0
for path in dict.fromkeys(files):
    in_code = False
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in link.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            file = target.split("#", 1)[0]
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file))
            if resolved.startswith(".."):
                print(f"check-docs: {path}:{number}: link outside the repository: {target}", file=sys.stderr)
                bad += 1
            elif not os.path.exists(resolved) and resolved not in allowed:
                print(f"check-docs: {path}:{number}: broken link: {target}", file=sys.stderr)
                bad += 1
sys.exit(1 if bad else 0)
EOF

if [ "$status" -eq 0 ]; then echo "check-docs: ok"; fi
exit "$status"
