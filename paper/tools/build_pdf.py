#!/usr/bin/env python3
"""Compiles PAPER_DIR/paper.typ to OUT with Typst, using only the fonts Typst carries (so
that every machine lays the paper out alike) and a fixed timestamp (so that the same sources
give the same bytes). Warnings are printed; errors fail.

Usage: build_pdf.py PAPER_DIR OUT
"""
import datetime
import os
import sys

import typst

paper_dir, out = sys.argv[1], sys.argv[2]
try:
    _, warnings = typst.compile_with_warnings(
        os.path.join(paper_dir, "paper.typ"), output=out, root=paper_dir,
        ignore_system_fonts=True, font_paths=[],
        timestamp=int(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp()))
except typst.TypstError as e:
    sys.exit(f"paper: typst failed: {e}")
for w in warnings:
    print(f"paper: typst warning: {w}", file=sys.stderr)
