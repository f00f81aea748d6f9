"""An option that takes a value, followed by another option of the same command, is a missing
value, not a value: click would take `demo --outdir --quick` as a folder named `--quick` (and
run the full demo into it), `generate --outdir --grid` as a folder named `--grid`."""

from __future__ import annotations

import click


def check_option_values(
    ctx: click.Context, cmd: click.Command, args: list[str], name: str | None = None
) -> None:
    """UsageError when, in `args` (what follows the command's name), an option that needs a
    value is followed by one of `cmd`'s own option names; sub-commands of a group too. The
    error's context is the (sub-)command's own, so its help pointer names the right one."""
    here = click.Context(cmd, info_name=name or cmd.name, parent=ctx)
    if isinstance(cmd, click.Group):
        sub = cmd.get_command(ctx, args[0]) if args and not args[0].startswith("-") else None
        if sub is not None:
            check_option_values(here, sub, args[1:], args[0])
        return
    names = {n for p in cmd.params for n in (*p.opts, *p.secondary_opts)}
    wants_value = {
        n for p in cmd.params
        if isinstance(p, click.Option) and not p.is_flag and not p.count and p.nargs != 0
        for n in p.opts
    }  # fmt: skip
    for i, token in enumerate(args[:-1]):
        if token == "--":  # everything after is an argument
            return
        if token in wants_value and args[i + 1] in names:
            raise click.UsageError(
                f"Option '{token}' needs a value, got the option '{args[i + 1]}'", ctx=here
            )
