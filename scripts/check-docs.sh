#!/usr/bin/env bash
# Documentation check (cheap; run by .ci/run before the tests). Fails when
#   1. a tracked file refers to a path outside the repository: a relative path that climbs above
#      the repository's root (more `../` than the file is deep), or an absolute path into the
#      directory that holds this checkout (unless that is / or a shared temporary directory);
#      the project must stand alone;
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

status=0

# 1. References to paths outside the repository.
python3 - "$(cd .. && pwd)" <<'EOF' || status=1
import re, subprocess, sys
import os, stat
parent = sys.argv[1].rstrip("/") + "/"
# A checkout directly in / or in a shared temporary directory (sticky, like /tmp) has no
# meaningful neighbours: absolute paths are then not checked, only relative ones.
if parent == "/" or os.stat(parent).st_mode & stat.S_ISVTX:
    parent = None
files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.decode().split("\0")
climb = re.compile(r"(?<![A-Za-z0-9_.~-])((?:\.\./)+)[A-Za-z_]")
hits = []
for path in filter(None, files):
    try:
        text = open(path, encoding="utf-8").read()
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        continue
    depth = path.count("/")
    for number, line in enumerate(text.splitlines(), 1):
        if (parent and parent in line) or any(len(m.group(1)) // 3 > depth for m in climb.finditer(line)):
            hits.append(f"{path}:{number}: {line.strip()[:160]}")
if hits:
    print("check-docs: references to paths outside the repository:", *hits, sep="\n", file=sys.stderr)
    sys.exit(1)
EOF

# 2. Relative links in README.md and docs/*.md.
python3 - <<'EOF' || status=1
import os, re, sys, glob
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
            elif not os.path.exists(resolved):
                print(f"check-docs: {path}:{number}: broken link: {target}", file=sys.stderr)
                bad += 1
sys.exit(1 if bad else 0)
EOF

if [ "$status" -eq 0 ]; then echo "check-docs: ok"; fi
exit "$status"
