#!/usr/bin/env python3
"""One package of the Airbyte sweep, through weft: `weft connector install`, `connector spec`,
`connector discover` of a product using it, and (when asked) a full-refresh `sync run` into a
Parquet lake, counted back with pyarrow.

    airbyte_weft.py REQUIREMENT CACHE_DIR WEFT_BINARY [SYNC_CONFIG_JSON]  > result.json

Virtualenvs go to CACHE_DIR/weft (WEFT_CONNECTOR_CACHE), so reruns reuse them. Prints one
JSON object like airbyte_direct.py's: per step ok/failed and the error weft printed.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time


def main():
    req, cache, weft = sys.argv[1:4]
    sync_config = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
    config = sync_config if sync_config is not None else {}
    env = dict(os.environ, WEFT_CONNECTOR_CACHE=f"{cache}/weft")
    res = {"package": req, "install": "failed", "python": "-", "spec": "failed",
           "discover": "failed", "reason": ""}
    project = tempfile.mkdtemp(prefix="weft-sweep-")
    os.makedirs(f"{project}/domains/sweep")
    open(f"{project}/domains/sweep/domain.yaml", "w").write(
        "domain: sweep\nowners: [sweep@example.com]\ndescription: sweep\n")
    open(f"{project}/weft.yaml", "w").write(
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n"
        "    connector: parquet\n    config:\n      path: lake\n")

    def product(streams):
        body = "".join(f"  - name: {json.dumps(s)}\n    mode: full_refresh\n    write: overwrite\n"
                       for s in streams)
        open(f"{project}/domains/sweep/p.yaml", "w").write(
            "product: p\ndomain: sweep\nowner: sweep@example.com\ndescription: sweep\n"
            f"source:\n  connector: airbyte\n  config:\n    package: {json.dumps(req)}\n"
            f"    catalog_cache: 0s\n    config: {json.dumps(config)}\nstreams:\n{body}")

    def weft_run(*args, timeout=900):
        try:
            p = subprocess.run([weft, "--project", project, *args], capture_output=True,
                               text=True, timeout=timeout, env=env)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            return None, "", f"error: took longer than {timeout}s"

    def error(err):
        lines = [l[len("error: "):] for l in err.splitlines() if l.startswith("error: ")]
        text = lines[-1] if lines else (err.strip().splitlines() or ["no error printed"])[-1]
        return re.sub(r".*its last error[^:]*: ", "", text)

    product(["sweep"])
    start = time.time()
    rc, out, err = weft_run("connector", "install", req)
    res["seconds"] = round(time.time() - start)
    if rc == 0:
        res["install"] = "ok"
        m = re.search(r"^  python: *(3\.\d+) ", out, re.M)
        res["python"] = m.group(1) if m else "?"
    else:
        res["reason"] = error(err)
    rc, out, err = weft_run("connector", "spec", "sweep/p", timeout=300)
    if rc == 0 and "connectionSpecification" in out:
        res["spec"] = "ok"
    elif not res["reason"]:
        res["reason"] = error(err)
    rc, out, err = weft_run("connector", "discover", "sweep/p", "--format", "json", timeout=300)
    streams = []
    if rc == 0:
        streams = [s["name"] for s in json.loads(out)]
        res["discover"] = f"ok, {len(streams)} streams"
    elif not res["reason"]:
        res["reason"] = error(err)
    if sync_config is not None and streams:
        product(streams)
        rc, out, err = weft_run("sync", "run", "--no-progress", timeout=900)
        if rc == 0:
            import pyarrow.dataset as ds
            counts = {}
            for s in streams:
                d = f"{project}/lake/sweep/p/{s}"
                counts[s] = ds.dataset(d, format="parquet").count_rows() if os.path.isdir(d) else 0
            res["sync"] = counts
        else:
            res["sync"] = "failed: " + error(err)
    print(json.dumps(res))


main()
