#!/usr/bin/env python3
"""One package of the Airbyte sweep, run directly (no weft): the way a user would run it.

    airbyte_direct.py REQUIREMENT CACHE_DIR [SYNC_CONFIG_JSON]  > result.json

Every Python 3 interpreter that runs (pyenv's versions, then python3.N on PATH), newest
first: a virtualenv of its own (cached in CACHE_DIR/direct, reused on a rerun), `pip install`,
then the package's console script `spec`; the first interpreter on which `spec` prints a SPEC
is kept, and `discover --config {}` runs there; with SYNC_CONFIG_JSON, also a `read` of every
stream (full refresh) with that config, counting records per stream. Prints one JSON object: per step ok/failed and
the reason (the connector's TRACE message, or the last line it printed).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time


def run(argv, timeout, **kw):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return None, "", f"took longer than {timeout}s"


def interpreters():
    """(minor, path) of every interpreter that runs, newest first, one per minor."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    cands = sorted(glob.glob(f"{root}/versions/3.*/bin/python3.*[0-9]"))
    for d in os.environ.get("PATH", "").split(":"):
        cands += sorted(glob.glob(f"{d}/python3.*[0-9]"))
    found = {}
    for c in cands:
        if not re.search(r"python3\.\d+$", c):
            continue
        rc, out, _ = run([c, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], 20)
        if rc == 0 and out.strip().startswith("3."):
            minor = int(out.strip().split(".")[1])
            found.setdefault(minor, c)
    return sorted(found.items(), reverse=True)


def messages(out):
    for line in out.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if isinstance(m, dict):
            yield m


def reason(out, err):
    """The connector's own error: its TRACE message (and internal message), else the last line
    it printed."""
    for m in messages(out):
        if m.get("type") == "TRACE" and m.get("trace", {}).get("error"):
            e = m["trace"]["error"]
            internal = e.get("internal_message")
            return (e.get("message") or "") + (f" (internal message: {internal})" if internal else "")
    lines = [l.strip() for l in (err + "\n" + out).splitlines() if l.strip()]
    return lines[-1] if lines else "it printed nothing"


def console_script(venv, name):
    want = re.sub(r"[-_.]+", "-", name).lower()
    short = want.removeprefix("airbyte-")
    scripts = []
    for ep in glob.glob(f"{venv}/lib/python3.*/site-packages/*.dist-info/entry_points.txt"):
        dist = os.path.basename(os.path.dirname(ep)).rsplit("-", 1)[0]
        if re.sub(r"[-_.]+", "-", dist).lower() != want:
            continue
        section = None
        for line in open(ep):
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[console_scripts]" and "=" in line:
                scripts.append(line.split("=")[0].strip())
    scripts.sort(key=lambda s: s != short)
    for s in scripts + [short]:
        if os.access(f"{venv}/bin/{s}", os.X_OK):
            return f"{venv}/bin/{s}"
    return None


def main():
    req, cache = sys.argv[1], sys.argv[2]
    name = re.split(r"[=<>!~ ]", req)[0]
    res = {"package": req, "install": "failed", "python": "-", "spec": "failed",
           "discover": "failed", "reason": "", "attempts": []}
    start = time.time()
    exe = None
    for minor, python in interpreters():
        venv = f"{cache}/direct/{req.replace('==', '-')}-py3.{minor}"
        marker = f"{venv}/sweep-ok"
        if os.path.exists(f"{venv}.failed"):
            res["attempts"].append(f"3.{minor}: " + open(f"{venv}.failed").read())
            continue
        if not os.path.exists(marker):
            shutil.rmtree(venv, ignore_errors=True)
            rc, out, err = run([python, "-m", "venv", venv], 300)
            if rc == 0:
                rc, out, err = run([f"{venv}/bin/python", "-m", "pip", "install", "--quiet",
                                    "--disable-pip-version-check", req], 1800)
            if rc != 0:
                text = err + out
                why = ("Requires-Python" if "Requires-Python" in text
                       or "require a different python" in text else reason(out, err))
                open(f"{venv}.failed", "w").write(f"pip install failed: {why}")
                res["attempts"].append(f"3.{minor}: pip install failed: {why}")
                shutil.rmtree(venv, ignore_errors=True)
                continue
        exe = console_script(venv, name)
        if exe is None:
            res["attempts"].append(f"3.{minor}: no console script")
            continue
        rc, out, err = run([exe, "spec"], 300)
        if any(m.get("type") == "SPEC" for m in messages(out)):
            open(marker, "w").write("")
            res.update(install="ok", python=f"3.{minor}", spec="ok")
            break
        why = reason(out, err)
        res["attempts"].append(f"3.{minor}: spec failed: {why}")
        res["install"] = "ok"
        exe = None
    res["seconds"] = round(time.time() - start)
    if exe is None:
        res["reason"] = res["attempts"][-1] if res["attempts"] else "no working interpreter"
        print(json.dumps(res))
        return
    cfg = f"{cache}/direct/empty-config.json"
    open(cfg, "w").write("{}")
    rc, out, err = run([exe, "discover", "--config", cfg], 300)
    cats = [m for m in messages(out) if m.get("type") == "CATALOG"]
    if cats:
        res["discover"] = f"ok, {len(cats[0]['catalog'].get('streams', []))} streams"
    else:
        res["reason"] = reason(out, err)
    if len(sys.argv) > 3 and cats:
        cfg = f"{cache}/direct/{req}-config.json"
        open(cfg, "w").write(sys.argv[3])
        catalog = f"{cache}/direct/{req}-catalog.json"
        json.dump({"streams": [{"stream": s, "sync_mode": "full_refresh",
                                "destination_sync_mode": "overwrite"}
                               for s in cats[0]["catalog"]["streams"]]}, open(catalog, "w"))
        rc, out, err = run([exe, "read", "--config", cfg, "--catalog", catalog], 900)
        counts = {s["name"]: 0 for s in cats[0]["catalog"]["streams"]}
        for m in messages(out):
            if m.get("type") == "RECORD":
                counts[m["record"]["stream"]] = counts.get(m["record"]["stream"], 0) + 1
        res["sync"] = counts if rc == 0 else f"failed: {reason(out, err)}"
    print(json.dumps(res))


main()
