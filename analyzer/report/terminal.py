"""The findings as text for a terminal, like a linter's output: code, what was seen, what to change."""

from __future__ import annotations

import textwrap

from analyzer.report.analysis import Analysis
from analyzer.report.machine import cost_line, energy_line

MAX_IDS_SHOWN = 5


def render_findings(analysis: Analysis, width: int = 100) -> str:
    """One block per finding, headed by a one-line summary of the traffic."""
    head = analysis.headline
    if not head["requests"]:
        return "no interactions to report on\n"
    lines = [
        f"{head['requests']} requests, {head['errors']} errors, models: {', '.join(head['models']) or '-'} "
        f"({head['first']} – {head['last']})"
    ]
    lines.extend(line for line in (energy_line(head), cost_line(head)) if line)
    if not analysis.findings:
        lines.append("no findings: nothing looks wrong in these records")
        return "\n".join(lines) + "\n"
    count = len(analysis.findings)
    lines.append(f"{count} finding{'' if count == 1 else 's'}:")
    for finding in analysis.findings:
        shown = ", ".join(finding.ids[:MAX_IDS_SHOWN])
        more = f" … and {len(finding.ids) - MAX_IDS_SHOWN} more" if len(finding.ids) > MAX_IDS_SHOWN else ""
        lines.append("")
        lines.append(f"{finding.severity.upper():8} {finding.code}: {finding.title}")
        for label, text in (("seen", finding.detail), ("change", finding.suggestion)):
            lines.extend(textwrap.wrap(text, width, initial_indent=f"  {label:8}", subsequent_indent=" " * 10))
        when = finding.first if finding.first == finding.last else f"{finding.first} – {finding.last}"
        lines.append(f"  {'when':8}{when}")
        lines.append(f"  {'records':8}{shown}{more}")
        for number, command in enumerate(finding.try_commands):
            lines.append(f"  {'try it' if number == 0 else '':8}$ {command}")
    return "\n".join(lines) + "\n"
