#!/usr/bin/env bash
# check-cli-docs.sh BUILD [DOC]
#
# Fails when docs/cli.md (or DOC) no longer matches the lamina command built in BUILD: every
# command `lamina --help` lists needs a section headed "## `lamina COMMAND`", every flag that
# `lamina COMMAND --help` prints (long and short forms, except --help/-h) must appear in that
# section in backticks (`--flag`, `--flag=VALUE`, `-f`), and every format listed under
# "Formats:" (lamina convert's sub-commands) as `lamina COMMAND FORMAT`.  Registered as the
# meson test cli-docs (suite e2e).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD [DOC]" >&2
  exit 2
fi
build=$1
doc=${2:-$(cd "$(dirname "$0")/.." && pwd)/docs/cli.md}
lamina=$build/cli/lamina
[ -x "$lamina" ] || { echo "check-cli-docs: no executable $lamina (build first)" >&2; exit 2; }
[ -r "$doc" ] || { echo "check-cli-docs: cannot read $doc" >&2; exit 2; }

# The section of $doc for command $1: from its heading to the next level-2 heading.
section() {
  awk -v head="## \`lamina $1\`" '
    $0 == head { inside = 1; next }
    inside && /^## / { exit }
    inside { print }
  ' "$doc"
}

commands=$("$lamina" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
if [ -z "$commands" ]; then
  echo "check-cli-docs: lamina --help lists no commands" >&2
  exit 1
fi

missing=0
complain() {
  echo "$doc: $1" >&2
  missing=$((missing + 1))
}

for cmd in $commands; do
  text=$(section "$cmd")
  if [ -z "$text" ]; then
    complain "no section '## \`lamina $cmd\`' for the command lamina $cmd"
    continue
  fi
  help=$("$lamina" "$cmd" --help)
  # Option lines look like "  -o, --output=DIR   ..." or "  --json   ...".
  flags=$(printf '%s\n' "$help" |
    sed -n -E 's/^  +((-[A-Za-z0-9], )?--[A-Za-z0-9][A-Za-z0-9-]*).*/\1/p' |
    tr ',' '\n' | sed 's/^ *//' | grep -v -x -e '--help' -e '-h' -e '--help-all' || true)
  for flag in $flags; do
    # `--init` must not count as `--init-partial`: the flag ends at '=', ' ' or a backtick.
    # (Here-strings, not pipes into grep -q: with pipefail, a writer killed by SIGPIPE after
    # an early match would read as "not found".)
    if ! grep -q -E -- "\`$flag([=\` ]|\$)" <<<"$text"; then
      complain "lamina $cmd: the flag $flag (in lamina $cmd --help) is not documented"
    fi
  done
  formats=$(printf '%s\n' "$help" |
    awk '/^Formats:/ { on = 1; next } on && /^[^ ]/ { on = 0 } on && /^  [a-z]/ { print $1 }')
  for format in $formats; do
    if ! grep -q -F -- "\`lamina $cmd $format" <<<"$text"; then
      complain "lamina $cmd: the format $format (in lamina $cmd --help) is not documented"
    fi
  done
done

if [ "$missing" -gt 0 ]; then
  echo "check-cli-docs: $missing item(s) of the --help output are missing from $doc" >&2
  exit 1
fi
echo "check-cli-docs: every command and flag of $lamina is in $doc"
