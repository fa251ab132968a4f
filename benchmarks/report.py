"""Text, markdown and PNG reports of a benchmark run."""

from __future__ import annotations

from collections import defaultdict


def _ms(s):
    return "-" if s is None else (f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}")


def line(rec):
    head = f"{rec['pass']:<11} {rec['contender']:<18}"
    if "error" in rec:
        return head + " " + rec["error"]
    s = head + f" {_ms(rec['median_s']):>9} ms"
    r = rec.get("ratio_to_torch")
    s += f"  x{r:6.2f}" if r is not None else "        "
    if "GBps" in rec:
        s += f"  {rec['GBps']:7.2f} GB/s ({100 * rec['copy_fraction']:5.1f}% of copy)"
    if rec.get("check") not in (None, "ok"):
        s += f"  CHECK: {rec['check']}"
    return s


def memory_text(mem):
    out = [(f"  output {mem['output_bytes'] / 2**20:.1f} MiB, target <= 2 x output + 32 MiB = "
            f"{mem['target_bytes'] / 2**20:.1f} MiB  ({mem['workload']})")]
    for k, v in mem.items():
        if isinstance(v, dict):
            if "error" in v:
                out.append(f"  {k:<22} {v['error']}")
            else:
                verdict = "meets" if v["meets_target"] else "MISSES"
                out.append(f"  {k:<22} peak extra {v['peak_extra_bytes'] / 2**20:8.1f} MiB "
                           f"({v['ratio_to_output']:.2f} x output)  {verdict} target")
    return "\n".join(out)


def markdown(payload):
    env = payload["env"]
    recs = payload["records"]
    lines = ["# xembed benchmark results", ""]
    lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    lines.append("")
    lines.append("Times are medians in ms; `ratio` = time / torch native time in the same run and group "
                 "(torch CPU for the CPU group, torch CUDA for the GPU group), each contender's calls alternated "
                 "one by one with torch's (the ratio divides by the median of those torch calls); GB/s = (bytes of "
                 "rows read + output written) / time; `% copy` = that bandwidth relative to a same-run copy moving "
                 "the same number of bytes.")
    by_w = defaultdict(list)
    for r in recs:
        by_w[(r["workload"], r["group"])].append(r)
    for (wname, group), rs in by_w.items():
        lines += ["", f"## {wname} ({group})", ""]
        c = rs[0].get("copy_s")
        if c:
            lines.append(f"Same-run copy of {rs[0]['traffic_bytes'] / 2**20:.1f} MiB: {c * 1e3:.3f} ms "
                         f"({rs[0]['traffic_bytes'] / c / 1e9:.1f} GB/s).")
            lines.append("")
        lines.append("| pass | contender | median ms | ratio to torch | GB/s | % copy | check |")
        lines.append("|---|---|---:|---:|---:|---:|---|")
        for r in rs:
            if "error" in r:
                lines.append(f"| {r['pass']} | {r['contender']} | - | - | - | - | {r['error'][:80]} |")
                continue
            ratio = r.get("ratio_to_torch")
            ratio_s = "-" if ratio is None else f"{ratio:.2f}"
            gbs = f"{r['GBps']:.2f}" if "GBps" in r else "-"
            frac = f"{100 * r['copy_fraction']:.0f}%" if "copy_fraction" in r else "-"
            lines.append(f"| {r['pass']} | {r['contender']} | {_ms(r['median_s'])} | {ratio_s} | {gbs} | "
                         f"{frac} | {r.get('check') or ''} |")
    if payload.get("quantized"):
        from .quantized import table

        note = ("Forward sum; ratios divide medians of calls alternated one by one with the baseline's (torch's "
                "quantized op on the same bytes, xembed's float32 forward).")
        lines += ["", "## quantized tables (cpu)", "", note, "", table(payload["quantized"])]
    mem = payload.get("memory")
    if mem:
        lines += ["", "## Memory (tracemalloc, one NumPy forward)", "", "```", memory_text(mem), "```"]
    lines.append("")
    return "\n".join(lines)


def plot(payload, path):
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recs = [r for r in payload["records"] if "median_s" in r and r.get("ratio_to_torch")]
    groups = sorted({(r["workload"], r["group"]) for r in recs}, key=lambda x: (x[1], x[0]))
    if not groups:
        return None
    all_conts = list(dict.fromkeys(r["contender"] for r in recs))
    cmap = plt.get_cmap("tab10")
    color = {c: cmap(i % 10) for i, c in enumerate(all_conts)}  # one colour per contender in every panel
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 2.9 * len(groups)), squeeze=False)
    for ax, (wname, group) in zip(axes[:, 0], groups, strict=True):
        rs = [r for r in recs if r["workload"] == wname and r["group"] == group]
        passes = list(dict.fromkeys(r["pass"] for r in rs))
        conts = list(dict.fromkeys(r["contender"] for r in rs))
        width = 0.8 / max(len(conts), 1)
        for j, c in enumerate(conts):
            xs, ys = [], []
            for i, p in enumerate(passes):
                for r in rs:
                    if r["pass"] == p and r["contender"] == c:
                        xs.append(i + (j - (len(conts) - 1) / 2) * width)
                        ys.append(r["ratio_to_torch"])
            ax.bar(xs, ys, width=width, label=c, color=color[c])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(passes)))
        ax.set_xticklabels(passes)
        ax.set_ylabel("time / torch")
        ax.set_title(f"{wname} ({group}) - lower is better")
        ax.legend(fontsize=7, ncol=len(conts), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
