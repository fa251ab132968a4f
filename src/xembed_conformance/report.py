"""Markdown and JSON reports: a table options x functions with pass / fail / skip / extension."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CELL = {"pass": "pass", "fail": "**FAIL**", "skip": "skip", "extension": "extension", "not offered": "not offered",
        "xfail": "xfail", "xpass": "xpass", "error": "**ERROR**"}
COLUMNS = [("embedding", "values"), ("embedding", "grad"), ("embedding_bag", "values"), ("embedding_bag", "grad")]


def _cell(r: dict[str, Any] | None) -> str:
    return CELL.get(r["status"], r["status"]) if r else "—"


def markdown(report: dict[str, Any], with_repros: bool = True) -> str:
    res = report["results"]
    by = {(r["function"], r["option"], "values" if r["aspect"] in ("values", "error") else r["aspect"]): r for r in res}
    options: list[str] = []
    spec: dict[str, list[str]] = {}
    for r in res:
        if r["option"] not in options:
            options.append(r["option"])
        spec.setdefault(r["option"], [])
        spec[r["option"]] += [i for i in r.get("spec", []) if i not in spec[r["option"]]]
    s = report["summary"]
    verdict = "CONFORMS" if report["conforms"] else "DOES NOT CONFORM"
    out = [f"# Conformance report: `{report['target']}` on {report['backend']} ({report['device']})", "",
           f"**{verdict}** — " + ", ".join(f"{k}: {v}" for k, v in s.items() if v),
           "",
           f"oracle: {report['oracle']}; gradients via: {report['gradients']}; strict: {report['strict']}; "
           f"max_examples: {report['max_examples']}; seed: {report['seed']}; hypothesis {report['hypothesis']}; "
           f"{report['elapsed_s']} s; target calls: {report.get('isolation', 'in-process')}"
           + (f" ({report['worker_restarts']} worker restarts)" if report.get("worker_restarts") else ""),
           "",
           "| option | embedding | embedding grad | embedding_bag | embedding_bag grad | spec (docs/spec.md) |",
           "|---|---|---|---|---|---|"]
    for opt in options:
        cells = [_cell(by.get((fn, opt, a))) for fn, a in COLUMNS]
        out.append(f"| {opt} | " + " | ".join(cells) + " | " + ", ".join(f"`{i}`" for i in spec[opt]) + " |")
    out.append("")
    out.append("`values`: output values, dtype, shape, device and the weight after the call "
               "(max_norm's in-place renorm, nothing else changed); `error` rows: the call must raise a "
               "clear error and leave the weight untouched; `grad`: weight / per_sample_weights gradients "
               "(sparse: the COO layout and the densified values).")
    fails = [r for r in res if r["status"] in ("fail", "error")]
    if fails:
        out += ["", "## Failures", ""]
        for r in fails:
            out += [f"### `{r['id']}` — {r['status']}", "", r["message"], ""]
            if r["case"]:
                out += [f"shrunk case: {r['case']}", ""]
            if r["hypothesis_notes"]:
                out += ["```", *r["hypothesis_notes"], "```", ""]
            if with_repros and r["repro"]:
                out += ["```python", r["repro"].rstrip(), "```", ""]
    xf = [r for r in res if r["status"] in ("xfail", "xpass")]
    if xf:
        out += ["", "## Known deviations (xfails file)", ""]
        for r in xf:
            msg = f" ({r['message']})" if r["message"] else ""
            out.append(f"- `{r['id']}`: {r['status']} — {r['xfail_reason']}{msg}")
    stale = report.get("stale_xfails") or []
    if stale:
        out += ["", "## Stale xfails entries (absorbed no failure)", ""]
        out += [f"- line {x['line']}: `{x['entry']}` — {x['why']} ({x['reason']})" for x in stale]
    skips: dict[str, int] = {}
    for r in res:
        if r["status"] == "skip":
            skips.setdefault(r["message"], 0)
            skips[r["message"]] += 1
    if skips:
        out += ["", "## Skipped", "", *[f"- {n} x {m}" for m, n in skips.items()]]
    return "\n".join(out) + "\n"


def write(report: dict[str, Any], path: str) -> list[str]:
    """Write `path` as markdown (.md) and/or JSON (.json); any other suffix writes both PATH.md and PATH.json."""
    written = []
    if path.endswith(".json"):
        targets = [("json", path)]
    elif path.endswith(".md"):
        targets = [("md", path), ("json", path[:-3] + ".json")]
    else:
        targets = [("md", path + ".md"), ("json", path + ".json")]
    for kind, p in targets:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        with Path(p).open("w", encoding="utf-8") as fh:
            if kind == "json":
                json.dump(report, fh, indent=1, default=str)
            else:
                fh.write(markdown(report))
        written.append(p)
    return written
