"""The findings as text for a terminal, like a linter's output: code, what was seen, what to change."""

from __future__ import annotations

import textwrap

from analyzer.protocol.untrusted import for_terminal, terminal_cell
from analyzer.report.analysis import Analysis
from analyzer.report.machine import cost_line, energy_line

MAX_IDS_SHOWN = 5
MAX_MODELS_SHOWN = 10
MODEL_WIDTH = 60
TEXT_WIDTH = 1000  # a finding's title/detail/suggestion quoting a huge model name is cut here


def _models(models: list[str]) -> str:
    """The headline's model list: the first few (escaped and cut: names come from traffic), then a count."""
    shown = ", ".join(terminal_cell(name, MODEL_WIDTH) for name in models[:MAX_MODELS_SHOWN]) or "-"
    more = len(models) - MAX_MODELS_SHOWN
    return shown + (f" … and {more} more" if more > 0 else "")


def render_findings(analysis: Analysis, width: int = 100) -> str:
    """One block per finding, headed by a one-line summary of the traffic.

    Findings quote model names, paths and errors from traffic: every line is escaped for the terminal.
    """
    head = analysis.headline
    if not head["requests"]:
        return "no interactions to report on\n"
    lines = [
        f"{head['requests']} requests, {head['errors']} errors, models: {_models(head['models'])} "
        f"({head['first']} – {head['last']})"
    ]
    lines.extend(line for line in (energy_line(head), cost_line(head)) if line)
    if not analysis.findings:
        lines.append("no findings: nothing looks wrong in these records")
        return "\n".join(lines) + "\n"
    count = len(analysis.findings)
    lines.append(f"{count} finding{'' if count == 1 else 's'}:")
    for finding in analysis.findings:
        shown = for_terminal(", ".join(finding.ids[:MAX_IDS_SHOWN]))
        more = f" … and {len(finding.ids) - MAX_IDS_SHOWN} more" if len(finding.ids) > MAX_IDS_SHOWN else ""
        lines.append("")
        lines.append(f"{finding.severity.upper():8} {finding.code}: {terminal_cell(finding.title, TEXT_WIDTH)}")
        for label, text in (
            ("seen", terminal_cell(finding.detail, TEXT_WIDTH)),
            ("change", terminal_cell(finding.suggestion, TEXT_WIDTH)),
        ):
            lines.extend(textwrap.wrap(text, width, initial_indent=f"  {label:8}", subsequent_indent=" " * 10))
        when = finding.first if finding.first == finding.last else f"{finding.first} – {finding.last}"
        lines.append(f"  {'when':8}{for_terminal(when)}")
        lines.append(f"  {'records':8}{shown}{more}")
        for number, command in enumerate(finding.try_commands):
            lines.append(f"  {'try it' if number == 0 else '':8}$ {for_terminal(command)}")
    return "\n".join(lines) + "\n"
