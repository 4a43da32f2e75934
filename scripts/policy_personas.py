"""Rewrite the persona table of docs/policy.md from the shipped rules (glimpse.domain.personas).

.venv/bin/python scripts/policy_personas.py          # rewrite the table
.venv/bin/python scripts/policy_personas.py --check  # exit 1 if the page is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from glimpse.domain.personas import persona_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "policy.md"
START, END = "<!-- personas:start -->\n", "<!-- personas:end -->\n"


def rendered(page: str) -> str:
    head, _, rest = page.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}{persona_table()}{END}{tail}"


def main() -> int:
    page = PAGE.read_text()
    if START not in page or END not in page:
        print(f"{PAGE}: the persona markers are missing", file=sys.stderr)
        return 1
    new = rendered(page)
    if "--check" in sys.argv[1:]:
        if new != page:
            print(f"{PAGE} is out of date: run scripts/policy_personas.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
