#!/usr/bin/env python3
"""Writes crates/hale-app/src/growth-who.json, the WHO growth tables Hale draws percentile
curves from: the LMS parameters (Box-Cox power L, median M, coefficient of variation S) by
month of age and sex, for weight-for-age (WHO Child Growth Standards, 0-60 months),
length/height-for-age and BMI-for-age (the Standards to 60 months, then the WHO 2007
Growth Reference to 228 months = 19 years).

The source is WHO's own published tables (the *_zscores.xlsx and *-z-who-2007-exp.xlsx
files, https://www.who.int/tools/child-growth-standards and
https://www.who.int/tools/growth-reference-data-for-5to19-years), as the npm package
who-growth@1.7.0 (ISC) carries them in resources/WHODocuments:

    npm pack who-growth@1.7.0 && tar xzf who-growth-1.7.0.tgz
    pip install openpyxl
    python3 tools/growth/gen.py package/resources/WHODocuments

Not run by the build or CI: its output is committed.
"""
import json
import sys
from pathlib import Path

import openpyxl


def rows(path):
    ws = openpyxl.load_workbook(path, read_only=True).active
    out = []
    for r in list(ws.iter_rows(values_only=True))[1:]:
        if r[0] is None:
            continue
        out.append([int(r[0]), float(r[1]), float(r[2]), float(r[3])])
    return out


def join(*parts):
    """Rows by month, the first table's row kept where two give the same month."""
    seen, out = set(), []
    for part in parts:
        for r in part:
            if r[0] not in seen:
                seen.add(r[0])
                out.append(r)
    return sorted(out)


def main(src):
    src = Path(src)
    tables = {}
    for sex, who, y2007 in [("male", "boys", "boys"), ("female", "girls", "girls")]:
        tables.setdefault("weight", {})[sex] = rows(src / f"weightForAge/wfa_{who}_0-to-5-years_zscores.xlsx")
        tables.setdefault("height", {})[sex] = join(
            # months 0-23 lying (length), 24 on standing (height), as WHO measures them
            [r for r in rows(src / f"heightForAge/lhfa_{who}_0-to-2-years_zscores.xlsx") if r[0] < 24],
            rows(src / f"heightForAge/lhfa_{who}_2-to-5-years_zscores.xlsx"),
            rows(src / f"heightForAge/hfa-{y2007}-z-who-2007-exp.xlsx"),
        )
        bmi02 = src / f"bmiForAge/bmi_{who}_0-to-2-years_{'zcores' if who == 'boys' else 'zscores'}.xlsx"
        tables.setdefault("bmi", {})[sex] = join(
            [r for r in rows(bmi02) if r[0] < 24],
            rows(src / f"bmiForAge/bmi_{who}_2-to-5-years_zscores.xlsx"),
            rows(src / f"bmiForAge/bmi-{y2007}-z-who-2007-exp.xlsx"),
        )
    out = Path(__file__).resolve().parents[2] / "crates/hale-app/src/growth-who.json"
    with open(out, "w") as f:
        f.write("{\n")
        items = []
        for measure in ("weight", "height", "bmi"):
            for sex in ("male", "female"):
                body = ",".join(json.dumps(r, separators=(",", ":")) for r in tables[measure][sex])
                items.append(f'"{measure}-{sex}":[{body}]')
        f.write(",\n".join(items))
        f.write("\n}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1])
