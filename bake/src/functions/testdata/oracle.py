#!/usr/bin/env python3
"""Regenerates expected.txt from cases.txt with the reference buildx.

Each case (one HCL expression per line; `#` comments and blank lines skipped) is evaluated as
`jsonencode(CASE)` in a target's args, and the printed value or error is recorded as
`CASE<TAB>ok:"JSON"` or `CASE<TAB>err:"SUMMARY; DETAIL"` (both JSON-quoted).

Usage: KILN_TEST_BUILDX=/path/to/docker-buildx python3 oracle.py
"""
import json
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDX = os.environ["KILN_TEST_BUILDX"]
ERROR = re.compile(
    r"^ERROR: f\.hcl:[0-9]+,[0-9]+-[0-9]+: (.*?)(, and [0-9]+ other diagnostic\(s\))?\Z",
    re.M | re.S,
)


def run(expr):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "f.hcl"), "w") as f:
            f.write('target "t" {\n  args = {\n    r = jsonencode(%s)\n  }\n}\n' % expr)
        p = subprocess.run(
            [BUILDX, "bake", "--print", "-f", "f.hcl", "t"],
            cwd=d, capture_output=True, text=True, errors="replace",
        )
    if p.returncode != 0:
        err = p.stderr.strip().splitlines()
        last = [l for l in err if l.startswith("ERROR: ")]
        text = "\n".join(err[err.index(last[-1]):]) if last else p.stderr
        m = ERROR.search(text)
        return f"{expr}\terr:{json.dumps(m.group(1) if m else text)}"
    doc = json.loads(p.stdout)
    return f"{expr}\tok:{json.dumps(doc['target']['t']['args']['r'])}"


def main():
    with open(os.path.join(HERE, "cases.txt")) as f:
        cases = [l.rstrip("\n") for l in f if l.strip() and not l.lstrip().startswith("#")]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, cases))
    with open(os.path.join(HERE, "expected.txt"), "w") as f:
        f.write("\n".join(results) + "\n")
    print(f"{len(results)} cases written to expected.txt")


if __name__ == "__main__":
    main()
