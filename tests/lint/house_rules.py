#!/usr/bin/env python3
"""House rules that a reviewer should not have to check by eye:
  * source shape (CONVENTIONS.md "Small files"): no file under src/ or include/ over 700 lines, no
    function over 80 lines outside the compute kernels;
  * configuration is read in main only: no environment variable is read below src/cli/
    (cli/environment.h is the one place).

Functions are found the way the code is written (Google style): a definition starts at column 0
with a line that opens a brace and is not a namespace, class, struct, enum or extern block, and
ends at the next line that is a lone "}" at column 0. Prints every violation; exit 1 if any.

usage: house_rules.py [--root DIR] [--max-file-lines N] [--max-function-lines N]
"""
import argparse
import os
import re
import sys

SOURCE_DIRS = ("src", "include")
EXTENSIONS = (".h", ".cc", ".cu", ".cuh")
# Compute kernels: long straight-line code is their nature (CONVENTIONS.md, the rule).
KERNEL_PATTERNS = (re.compile(r"^src/kernels/"), re.compile(r"^src/engine/backends/cpu/kernels_"))
GETENV = re.compile(r"\b(std::)?(secure_)?getenv\s*\(")
NOT_A_FUNCTION = re.compile(r"^(namespace\b|class\b|struct\b|enum\b|union\b|extern\b|template\s*<[^>]*>\s*(class|struct)\b)")


def functions(lines):
    """(head line, first line number, length) of each column-0 brace block that is a function.
    A head may span lines (parameters wrapped onto indented continuation lines)."""
    start = None   # index of the head's first line while inside a body
    head = None    # index of a column-0 line whose declaration continues on the next lines
    for i, line in enumerate(lines):
        text = line.rstrip()
        top_level = bool(line) and not line[0].isspace()
        if start is not None:
            if text == "}":
                yield lines[start].strip(), start + 1, i - start + 1
                start = None
            elif top_level and text.endswith("{"):
                start = None  # a new top-level block: the previous opener was not a function body
            if start is not None:
                continue
        if top_level:
            head = None
            if text.startswith(("#", "//", "/*", "*")) or NOT_A_FUNCTION.match(line) or "=" in line.split("(")[0]:
                continue
            if text.endswith("{"):
                start = i
            elif not text.endswith((";", "}")) and "(" in text:
                head = i
        elif head is not None:
            if text.endswith("{"):
                start, head = head, None
            elif text.endswith(";"):
                head = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--max-file-lines", type=int, default=700)
    ap.add_argument("--max-function-lines", type=int, default=80)
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    problems = []
    for top in SOURCE_DIRS:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(EXTENSIONS):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    lines = f.read().split("\n")
                if lines and lines[-1] == "":
                    lines.pop()
                if len(lines) > args.max_file_lines:
                    problems.append(f"{rel}: {len(lines)} lines (limit {args.max_file_lines})")
                if not rel.startswith("src/cli/"):
                    for n, line in enumerate(lines, 1):
                        if GETENV.search(line) and not line.lstrip().startswith("//"):
                            problems.append(f"{rel}:{n}: reads the environment below src/cli "
                                            f"(read it in cli/environment.cc and pass an option)")
                if any(p.match(rel) for p in KERNEL_PATTERNS):
                    continue
                for head, first, length in functions(lines):
                    if length > args.max_function_lines:
                        problems.append(f"{rel}:{first}: function of {length} lines (limit "
                                        f"{args.max_function_lines}): {head[:90]}")
    for p in problems:
        print(p)
    print(f"house rules: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
