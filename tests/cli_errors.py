"""What a refused command must print: exit status 1 and exactly one line, `Error: ...`."""


def only_error_line(res) -> str:
    """The click Result's one output line (asserted: exit 1, no other line, no traceback)."""
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]
