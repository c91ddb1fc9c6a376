#!/usr/bin/env bash
# Makes the RustSec advisory snapshot in deny/advisory-db the database `cargo deny --offline`
# reads: a git checkout at target/advisory-dbs/advisory-db-3157b0e258782691 (the directory
# cargo-deny derives from the database's URL), committed at the snapshot's date so cargo-deny
# reports its true age. Does nothing when that checkout already holds this snapshot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
read -r _ commit date < deny/advisory-db/SNAPSHOT
db=target/advisory-dbs/advisory-db-3157b0e258782691
if [ -f "$db/.snapshot" ] && [ "$(cat "$db/.snapshot")" = "$commit" ]; then
  exit 0
fi
rm -rf "$db"
mkdir -p "$db"
cp -R deny/advisory-db/. "$db/"
(
  cd "$db"
  git init -q
  git add -A
  GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
    git -c user.name=csvbus -c user.email=csvbus@localhost commit -qm "RustSec advisory-db $commit"
)
echo "$commit" > "$db/.snapshot"
echo "[advisory-db] RustSec snapshot $commit ($date) in $db"
