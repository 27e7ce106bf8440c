"""Shared by the examples: makes the python3-thrift bindings of
thrift/demo.thrift importable, generating them into build/gen-py (or
$TR_BUILD_DIR/gen-py) with `thrift --gen py` when they are missing, the way
tests/integration/trtest.py does.  Run the examples with /usr/bin/python3
(Debian's python3-thrift)."""
import os
import subprocess
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TR_BUILD_DIR") or os.path.join(TOP, "build")
GEN = os.path.join(BUILD, "gen-py")

if not os.path.isdir(os.path.join(GEN, "tr_demo")):
    os.makedirs(GEN, exist_ok=True)
    subprocess.check_call(["thrift", "--gen", "py", "-out", GEN, os.path.join(TOP, "thrift", "demo.thrift")])
sys.path.insert(0, GEN)
