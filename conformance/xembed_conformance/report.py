"""Markdown and JSON reports: a table options x functions with pass / fail / skip / extension."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

#: violations of a ``grad`` check found before any gradient is looked at (the forward call and its output)
FORWARD_CAUSES = ("call", "output", "weight after the call")

CELL = {"pass": "pass", "fail": "**FAIL**", "skip": "skip", "extension": "extension", "not offered": "not offered",
        "xfail": "xfail", "xpass": "xpass", "error": "**ERROR**"}
FLOAT_FUNCTIONS = ("embedding", "embedding_bag")
COLUMNS = [("embedding", "values"), ("embedding", "grad"), ("embedding_bag", "values"), ("embedding_bag", "grad")]


def _cell(r: dict[str, Any] | None) -> str:
    return CELL.get(r["status"], r["status"]) if r else "—"


def _quantized_table(results: list[dict[str, Any]]) -> list[str]:
    """The quantized ops' checks (checks/quantized.py): one line per check."""
    rows = [r for r in results if r["function"] not in FLOAT_FUNCTIONS]
    if not rows:
        return []
    return ["", "| quantized op | option | checks | verdict | spec (docs/spec.md) |", "|---|---|---|---|---|",
            *(f"| {r['function']} | {r['option']} | {r['aspect']} | {_cell(r)} | "
              + ", ".join(f"`{i}`" for i in r.get("spec", [])) + " |" for r in rows)]


def markdown(report: dict[str, Any], with_repros: bool = True) -> str:
    res = report["results"]
    table = [r for r in res if r["function"] in FLOAT_FUNCTIONS]
    by = {(r["function"], r["option"], "values" if r["aspect"] in ("values", "error") else r["aspect"]): r
          for r in table}
    options: list[str] = []
    spec: dict[str, list[str]] = {}
    for r in table:
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
    out += _quantized_table(report["results"])
    out.append("")
    out.append("`values`: output values, dtype, shape, device and the weight after the call "
               "(max_norm's in-place renorm, nothing else changed); `error` rows: the call must raise a "
               "clear error and leave the weight untouched; `grad`: weight / per_sample_weights gradients "
               "(sparse: the COO layout and the densified values).")
    groups = group_failures(res)
    if groups:
        out += ["", f"## Failures ({sum(len(g) for g in groups)} checks, {len(groups)} causes)", ""]
        for k, group in enumerate(groups, 1):
            out += [f"### Cause {k}: {group[0][0]['message'][:200]}", ""]
            for r, same_as in group:
                if same_as:
                    out += [f"- `{r['id']}` — {r['status']}: {same_as}", ""]
                    continue
                out += [f"#### `{r['id']}` — {r['status']}", "", failure_text(r, with_repro=with_repros,
                                                                              fenced=True), ""]
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


def _cause_key(r: dict[str, Any]) -> str:
    """A failure's message with its numbers and array literals blanked: failures of one cause share it."""
    msg = re.sub(r"\[[^\]]*\]", "[…]", r["message"])
    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", msg)


def group_failures(results: list[dict[str, Any]]) -> list[list[tuple[dict[str, Any], str]]]:
    """Failing and erroring checks grouped by cause: [(result, "" or why it repeats another check's failure)].

    A ``::grad`` check whose forward output fails (FORWARD_CAUSES) while its ``::values`` check failed the same
    way joins that check (``same_as`` says so); the others are grouped by their message with the numbers
    blanked (one column-tile bug: one cause, however many rows show it)."""
    failing = [r for r in results if r["status"] in ("fail", "error")]
    by_id = {r["id"]: r for r in failing}
    groups: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for r in failing:
        values = by_id.get(r["id"].rsplit("::", 1)[0] + "::values")
        cause = "call" if r.get("cause") == "vjp call" else r.get("cause")  # the vjp call is the grad's forward
        if (r["aspect"] == "grad" and values is not None and cause in FORWARD_CAUSES
                and values.get("cause") == cause):
            note = f"its forward {r['cause']} fails, as in `{values['id']}` ({r['message'][:120]})"
            groups.setdefault(_cause_key(values), []).append((r, note))
            continue
        groups.setdefault(_cause_key(r) if r["status"] == "fail" else "error: " + r["id"], []).append((r, ""))
    return [sorted(g, key=lambda m: bool(m[1])) for g in groups.values()]


def failure_text(r: dict[str, Any], with_repro: bool = True, fenced: bool = False) -> str:
    """One failing check: the message, the shrunk case, hypothesis's draws and (with_repro) the repro."""
    out = [f"{r['id']}: {r['message']}"]
    if r["case"]:
        out.append(f"shrunk case: {r['case']}")
    if r["hypothesis_notes"] and r["status"] == "fail":
        out += (["```"] if fenced else []) + r["hypothesis_notes"] + (["```"] if fenced else [])
    elif r["hypothesis_notes"]:  # a checker error: its traceback
        out += r["hypothesis_notes"]
    if with_repro and r["repro"]:
        repro = r["repro"].rstrip()
        out += ["```python", repro, "```"] if fenced else ["repro (python -):", repro]
    return "\n".join(out)


def verdict_line(report: dict[str, Any]) -> str:
    s = report["summary"]
    verdict = "CONFORMS" if report["conforms"] else "DOES NOT CONFORM"
    if s["error"]:
        verdict = "CHECKER ERROR (no verdict)"
    counts = ", ".join(f"{k}: {v}" for k, v in s.items() if v)
    return f"xembed-conformance: {report['target']} on {report['backend']}: {verdict} ({counts})"


def summary_lines(report: dict[str, Any], width: int = 160) -> list[str]:
    """The quiet summary: the verdict, then one line per failing check, grouped by cause."""
    out = [verdict_line(report)]
    groups = group_failures(report["results"])
    for k, group in enumerate(groups, 1):
        n = len(group)
        out.append(f"  cause {k} ({n} check{'s' if n > 1 else ''}): {group[0][0]['message']}"[:width])
        for r, same_as in group:
            out.append(f"    {r['status'].upper()} {r['id']} — {same_as or r['message']}"[:width])
    out += [f"  stale xfails entry, line {x['line']}: {x['entry']} — {x['why']}" for x in report["stale_xfails"]]
    return out
