#!/bin/sh
# Fake dmenu for dunst's context menu (tests/desktop): dunst spawns it with dunst's own environment,
# so the choice comes from the file named by DMENU_PICK_FILE (a fixed-string pattern; the first menu
# line containing it wins). The file is removed once read, so the test knows dunst got its answer.
# Every menu dunst offered is appended to "$DMENU_PICK_FILE.menu" for debugging.
MENU=$(cat)
[ -n "$DMENU_PICK_FILE" ] || exit 1
printf '%s\n--\n' "$MENU" >>"$DMENU_PICK_FILE.menu"
PICK=$(cat "$DMENU_PICK_FILE" 2>/dev/null)
rm -f "$DMENU_PICK_FILE"
[ -n "$PICK" ] || exit 1
printf '%s\n' "$MENU" | grep -m1 -F -- "$PICK"
