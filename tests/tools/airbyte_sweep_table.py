#!/usr/bin/env python3
"""Renders the Airbyte sweep's results (airbyte_direct.py's and airbyte_weft.py's JSON, one
file per package and side under CACHE/results/{direct,weft}) as Markdown: one table per
package list, direct beside weft per step, the reason on failure, and totals.

    airbyte_sweep_table.py CACHE LIST...
"""
import json
import os
import sys


def entries(path):
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            req, _, rest = line.partition(" ")
            yield req, rest.strip()


def load(cache, side, req):
    try:
        return json.load(open(f"{cache}/results/{side}/{req}.json"))
    except (OSError, ValueError):
        return None


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")[:220]


def same_reason(d, w):
    # weft adds context (the step, the package) around the connector's own words.
    return (not d and not w) or (d and w and (d in w or w in d))


def main():
    cache, lists = sys.argv[1], sys.argv[2:]
    for path in lists:
        rows, totals = [], {"n": 0, "both": 0, "missing": 0}
        count = lambda k: totals.__setitem__(k, totals.get(k, 0) + 1)
        for req, extra in entries(path):
            totals["n"] += 1
            d, w = load(cache, "direct", req), load(cache, "weft", req)
            if w is not None:
                # The stack trace weft keeps is for `sync status`, not for this table.
                w["reason"] = w["reason"].split(" [stack trace")[0]
            if d is None and w is None:
                totals["missing"] += 1
                rows.append(f"| {req} | - | - | - | - | not run yet | |")
                continue
            if d is None or w is None:
                totals["missing"] += 1
                r = d or w
                side = "direct only (weft: not run yet)" if d else "weft only (direct: not run yet)"
                rows.append(f"| {req} | {r['install']} | {r['python']} | {r['spec']} | "
                            f"{r['discover']} | {side} | {cell(r['reason'])} |")
                continue
            totals["both"] += 1
            for side, r in (("direct", d), ("weft", w)):
                if r["spec"] == "ok":
                    count(f"{side} spec")
                if r["discover"].startswith("ok"):
                    count(f"{side} discover")
            steps = ["install", "spec", "discover"]
            same_steps = all(d[s].split(",")[0] == w[s].split(",")[0] for s in steps) \
                and d["discover"] == w["discover"]
            worse = any(d[s].startswith("ok") and not w[s].startswith("ok") for s in steps)
            sync = ""
            if "sync" in d or "sync" in w:
                sync = "same rows per stream" if d.get("sync") == w.get("sync") \
                    else f"direct {d.get('sync')} vs weft {w.get('sync')}"
                if d.get("sync") != w.get("sync"):
                    worse = True
            verdict = "same" if same_steps and same_reason(d["reason"], w["reason"]) and not worse \
                else ("**weft worse**" if worse else "differs")
            count(verdict)
            pair = lambda s: d[s] if d[s] == w[s] else f"{d[s]} / {w[s]}"
            reason = d["reason"] if same_reason(d["reason"], w["reason"]) and d["reason"] \
                else f"direct: {d['reason'] or '-'}; weft: {w['reason'] or '-'}"
            if (d["reason"] or w["reason"]) and w["reason"] != d["reason"] and same_reason(d["reason"], w["reason"]):
                reason = f"{d['reason']} (weft: {w['reason']})"
            rows.append(f"| {req} | {pair('install')} | {pair('python')} | {pair('spec')} | "
                        f"{pair('discover')} | {verdict} | {cell(reason)}{'; sync: ' + sync if sync else ''} |")
        print(f"### {os.path.basename(path)}\n")
        n = totals["both"]
        print(f"- packages: {totals['n']}, run on both sides: {n}"
              + (f" ({totals['missing']} not yet)" if totals["missing"] else ""))
        print(f"- spec ok: direct {totals.get('direct spec', 0)}/{n}, weft {totals.get('weft spec', 0)}/{n}")
        print(f"- discover with an empty config returned a catalog: direct "
              f"{totals.get('direct discover', 0)}/{n}, weft {totals.get('weft discover', 0)}/{n}"
              " (the others: the connector's own error, the same on both sides where 'same')")
        print(f"- same outcome and reason per step: {totals.get('same', 0)}/{n}; weft worse: "
              f"{totals.get('**weft worse**', 0)}; other differences: {totals.get('differs', 0)}\n")
        print("Cells show `direct / weft` where the two differ.\n")
        print("| package | install | python | spec | discover (empty config) | direct vs weft | reason on failure |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        print("\n".join(rows))
        print()


main()
