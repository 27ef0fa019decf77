"""The experiment report's tables as Markdown and LaTeX, and its charts as standalone SVG
files, for a paper's appendix.

The tables are built once (``tables``: headers and plain-text cells) from what the report
page shows, and each format only escapes and lays them out, so the downloads cannot
disagree with the page. Energies and carbon read as on the page (experiments.units) with
the exact value beside them wherever the shown text rounds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.html import escape

from core.runlabel import label_of
from experiments import stats, units
from experiments.comparison import Row, Table
from experiments.report_methods import Fact


@dataclass(frozen=True)
class ExportTable:
    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]


# --- cells -----------------------------------------------------------------------------


def _q(scaled: units.Scaled) -> str:
    """ "12.3 kJ (12345.678 J)": the exact value where the text rounds or rescales it."""
    return scaled.text if scaled.text == scaled.exact else f"{scaled.text} ({scaled.exact})"


def energy(value: float | None) -> str:
    return "not measured" if value is None else _q(units.energy(value))


def carbon(value: float | None) -> str:
    return "not set" if value is None else _q(units.carbon(value))


def _number(value: float | None, fmt: str = ".4g") -> str:
    return "—" if value is None else format(value, fmt)


def _hp(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) if values else "defaults"


def _ratio(c: stats.Comparison | None) -> str:
    if c is None or c.ratio is None:
        return "—"
    if c.ratio_low is None or c.ratio_high is None:
        return (
            f"×{c.ratio:.3f} (too few runs for a 95 % interval: {c.a.n} parallel, "
            f"{c.b.n} solo; {c.min_runs} a side needed)"
        )
    return f"×{c.ratio:.3f} (×{c.ratio_low:.3f}–×{c.ratio_high:.3f})"


def _median(summary: stats.GroupSummary | None) -> tuple[str, str]:
    """(median, its interval or why there is none)."""
    if summary is None or not summary.n or summary.median is None:
        return "—", "—"
    if summary.low is not None and summary.high is not None:
        return energy(summary.median), f"{energy(summary.low)} – {energy(summary.high)}"
    values = ", ".join(energy(v) for v in summary.values)
    return energy(summary.median), f"too few runs for a 95 % interval: {values}"


def _verdict(row: Row) -> str:
    if row.comparison:
        return row.verdict
    return "no parallel run counted yet" if row.solo.n else "no solo run yet"


# --- the tables ------------------------------------------------------------------------


def tables(data: dict[str, Any]) -> list[ExportTable]:
    """The report's tables as plain text, in the page's order."""
    figure = data["figure"]
    versus: Table = data["versus"]
    hardware: list[Fact] = data["hardware"]
    out = [
        ExportTable(
            "hardware", "Hardware", ["What", "Value"], [[f.label, f.value] for f in hardware]
        )
    ]
    out.append(
        ExportTable(
            "runs",
            f"Energy per run: {figure.label}",
            [
                "Run",
                "Status",
                "Hyperparameters",
                "Duration (s)",
                figure.label,
                "Method",
                "Coverage (%)",
                "Coverage verdict",
            ],
            [
                [
                    label_of(r),
                    str(r.status),
                    _hp(r.hyperparameters),
                    _number(r.duration_s, ".6g"),
                    energy(value),
                    method if value is not None else "—",
                    _number(r.coverage_percent, ".1f"),
                    r.coverage_verdict or "—",
                ]
                for r, value, method in data["run_values"]
            ],
        )
    )
    footprint = data["footprint"]
    out.append(
        ExportTable(
            "totals",
            "Energy, carbon and cost",
            ["Figure", "Runs", "Energy", "Carbon", f"Cost ({footprint.currency or 'currency'})"],
            [
                [
                    t.figure.label,
                    str(t.runs),
                    energy(t.joules) if t.runs else "not measured",
                    carbon(t.kg_co2e) if t.runs else "not measured",
                    _number(t.cost) if t.cost is not None else "not set",
                ]
                for t in footprint.totals
            ],
        )
    )
    out.append(
        ExportTable(
            "sharing",
            "What sharing costs",
            [
                "Configuration",
                "Measured with",
                "Runs solo",
                "Runs parallel",
                "Slowdown (duration, parallel / solo, 95 % CI)",
                *[f"{f.label}, parallel / solo (95 % CI)" for f in versus.sharing_figures],
            ],
            [
                [
                    _hp(r.hyperparameters),
                    r.measured_with,
                    str(r.solo.n),
                    str(r.parallel.n),
                    _ratio(r.slowdown) if r.paired else "—",
                    *[
                        _ratio(r.sharing_by_key[f.key].comparison)
                        if f.key in r.sharing_by_key
                        else "—"
                        for f in versus.sharing_figures
                    ],
                ]
                for r in versus.rows
            ],
        )
    )
    rows = []
    for r in versus.rows:
        solo_median, solo_interval = _median(r.solo.summary)
        par_median, par_interval = _median(r.parallel.summary)
        rows.append(
            [
                _hp(r.hyperparameters),
                r.method + (f" · {r.device_settings}" if r.device_settings else ""),
                solo_median,
                solo_interval,
                str(r.solo.n),
                par_median,
                par_interval,
                str(r.parallel.n),
                _ratio(r.comparison),
                stats.format_p(r.comparison.p_value) if r.comparison else "—",
                _number(r.comparison.effect_size, ".2f") if r.comparison else "—",
                _verdict(r),
            ]
        )
    out.append(
        ExportTable(
            "versus",
            f"Parallel against solo: {figure.label}",
            [
                "Configuration",
                "Measured with",
                "Solo median",
                "Solo 95 % interval",
                "n solo",
                "Parallel median",
                "Parallel 95 % interval",
                "n parallel",
                "Parallel / solo (95 % CI)",
                "p",
                "Effect size",
                "Verdict",
            ],
            rows,
        )
    )
    return out


# --- Markdown --------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~!])")


def md_escape(text: str) -> str:
    """Plain text in a Markdown cell or line: punctuation that Markdown (GFM) reads as
    markup is backslash-escaped, a line break becomes a space."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown(data: dict[str, Any]) -> str:
    e = data["experiment"]
    lines = [
        f"# Wattlab report: {md_escape(e.name)}",
        "",
        f"{md_escape(str(e.mode))} mode · experiment {e.code} · generated "
        f"{data['generated_at']:%Y-%m-%d %H:%M} UTC",
        "",
        "## Methods",
        "",
        md_escape(data["methods"]),
    ]
    for t in tables(data):
        lines += ["", f"## {md_escape(t.title)}", ""]
        lines.append("| " + " | ".join(md_escape(h) for h in t.headers) + " |")
        lines.append("|" + "|".join(" --- " for _ in t.headers) + "|")
        for row in t.rows:
            lines.append("| " + " | ".join(md_escape(c) for c in row) + " |")
        if not t.rows:
            lines.append("| " + " | ".join(["—"] * len(t.headers)) + " |")
    return "\n".join(lines) + "\n"


# --- LaTeX -----------------------------------------------------------------------------

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "−": r"$-$",
    "·": r"$\cdot$",
    "…": r"\ldots{}",
    "µ": r"$\mu$",
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "–": "--",
    "—": "---",
}
_TEX_SPECIAL = re.compile("|".join(re.escape(k) for k in _TEX))


def tex_escape(text: str) -> str:
    """Plain text in LaTeX: every character LaTeX reads as markup is escaped, and the few
    symbols the report uses are spelled in LaTeX (no package beyond the defaults)."""
    return _TEX_SPECIAL.sub(lambda m: _TEX[m.group(0)], " ".join(str(text).split()))


def _tabular(t: ExportTable) -> list[str]:
    spec = "l" * len(t.headers)
    wide = len(t.headers) > 5
    body = [" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.rows]
    return [
        r"\begin{table}[htbp]",
        r"\centering\small",
        rf"\caption{{{tex_escape(t.title)}}}",
        rf"\label{{tab:wattlab-{t.key}}}",
        # Wide tables shrink to the text width; narrow ones keep the font's size.
        *([r"\resizebox{\textwidth}{!}{%"] if wide else []),
        rf"\begin{{tabular}}{{{spec}}}",
        r"\hline",
        " & ".join(rf"\textbf{{{tex_escape(h)}}}" for h in t.headers) + r" \\",
        r"\hline",
        *(body or [r"\multicolumn{" + str(len(t.headers)) + r"}{l}{none} \\"]),
        r"\hline",
        r"\end{tabular}" + ("}" if wide else ""),
        r"\end{table}",
    ]


def latex(data: dict[str, Any]) -> str:
    """A document that compiles as it is (pdflatex, graphicx only); its tables and the
    methods paragraph paste into a paper."""
    e = data["experiment"]
    lines = [
        "% Wattlab experiment report: tables and methods. Generated "
        f"{data['generated_at']:%Y-%m-%d %H:%M} UTC from experiment {e.code}.",
        r"\documentclass{article}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage{graphicx}",
        r"\begin{document}",
        rf"\section*{{Wattlab report: {tex_escape(e.name)}}}",
        r"\subsection*{Methods}",
        tex_escape(data["methods"]),
        "",
    ]
    for t in tables(data):
        lines += _tabular(t) + [""]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


# --- SVG -------------------------------------------------------------------------------

_SVG = re.compile(r"<svg\b.*</svg>", re.S)
_VIEWBOX = re.compile(r'viewBox="0 0 (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)"')


def _chart_css() -> str:
    """The app stylesheet's chart rules, for a file that has no stylesheet."""
    css = Path(settings.BASE_DIR) / "static" / "wattlab.css"
    text = css.read_text() if css.exists() else ""
    rules = [
        line.replace("svg.chart ", "")
        for line in text.splitlines()
        if line.startswith("svg.chart .")
    ]
    rules = [r.replace("var(--accent)", "#2563eb") for r in rules]
    return "text { font-family: system-ui, sans-serif; } " + " ".join(rules)


def standalone_svg(chart: str, *, title: str, description: str) -> str:
    """The chart's SVG as a file of its own: XML declaration, xmlns, width and height,
    its title (its own, or ``title`` where it has none: an empty chart), a description
    and its styles inline."""
    match = _SVG.search(str(chart))
    if match is None:
        raise ValueError("no SVG in the chart")
    svg = match.group(0)
    size = _VIEWBOX.search(svg)
    if size is not None:
        svg = svg.replace("<svg ", f'<svg width="{size.group(1)}" height="{size.group(2)}" ', 1)
    at = svg.index(">") + 1
    if svg.startswith("<title>", at):
        at = svg.index("</title>", at) + len("</title>")
    else:
        svg = svg[:at] + f"<title>{escape(title)}</title>" + svg[at:]
        at = svg.index("</title>", at) + len("</title>")
    extra = f"<desc>{escape(description)}</desc><style>{_chart_css()}</style>"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg[:at] + extra + svg[at:] + "\n"


def chart_filename(code: Any, name: str) -> str:
    return f"wattlab-report-{code}-{name}.svg"


def export_filename(code: Any, ext: str) -> str:
    return f"wattlab-report-{code}.{ext}"
