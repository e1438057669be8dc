"""`blockyard alerts ...`: a project's alert rules with their state, and test-sends
(registered by blockyard.cli; import-light)."""
from __future__ import annotations

import json
from typing import Any, Callable

import typer


def register(app: typer.Typer, workspace_getter: Callable[[], Any], fail: Callable[..., None]) -> None:
    alerts_app = typer.Typer(help="Alert rules and test-sends (notification_config).", no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")

    def _results(results: list[dict]) -> None:
        if not results:
            typer.echo("nothing sent: the notification_config has no channel")
        for r in results:
            status = "sent" if r["ok"] else "FAILED"
            typer.echo(f"{r['channel']}: {status}" + (f" ({r['target']})" if r.get("target") else "")
                       + (f": {r['error']}" if r.get("error") else ""))
        if any(not r["ok"] for r in results):
            raise typer.Exit(1)

    @alerts_app.command("rules")
    def rules_cmd(
        project: str = typer.Argument(..., help="Project name."),
        pipeline: str = typer.Option(None, "--pipeline", "-p", help="A pipeline (its rules replace the project's)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """The alert rules of a project (pipeline) and the last state of each, per model."""
        from blockyard.errors import BlockyardError
        from blockyard.notify.rules import rules_with_states

        ws = workspace_getter()
        try:
            rules = rules_with_states(ws, project, pipeline)
        except BlockyardError as exc:
            fail(str(exc))
        if as_json:
            typer.echo(json.dumps(rules, default=str, indent=2))
            return
        if not rules:
            typer.echo("no rules (notification_config.rules)")
        for rule in rules:
            scope = " ".join(f"{k}={rule[k]}" for k in ("model", "pipeline") if rule.get(k))
            typer.echo(f"{rule['name']}: {rule['metric']} {rule['op']} {rule['threshold']}" + (f" [{scope}]" if scope else ""))
            for s in rule["states"] or [{"scope": "-", "firing": None}]:
                state = {True: "FIRING", False: "ok", None: "never evaluated"}[s.get("firing")]
                last = f", last value {s['last_value']:.4g} (check {s['last_check_id']})" if s.get("last_value") is not None else ""
                typer.echo(f"  {s['scope']}: {state}" + (f" since {s['since']}" if s.get("since") else "") + last)

    @alerts_app.command("test")
    def test_cmd(
        project: str = typer.Argument(..., help="Project name."),
        pipeline: str = typer.Option(None, "--pipeline", "-p", help="Use the pipeline's notification_config."),
    ) -> None:
        """Send a test alert to every channel of the notification_config."""
        from blockyard.notify import send_test_alert

        _results([r.to_dict() for r in send_test_alert(workspace_getter(), project, pipeline)])

    @alerts_app.command("test-rule")
    def test_rule_cmd(
        project: str = typer.Argument(..., help="Project name."),
        rule: str = typer.Argument(..., help="The rule's name (notification_config.rules[].name)."),
        pipeline: str = typer.Option(None, "--pipeline", "-p", help="Use the pipeline's notification_config."),
    ) -> None:
        """Send a rule's alert, with the newest check's figures, as a test (its state is unchanged)."""
        from blockyard.errors import BlockyardError
        from blockyard.notify.rule_messages import send_rule_test

        try:
            out = send_rule_test(workspace_getter(), project, rule, pipeline)
        except BlockyardError as exc:
            fail(str(exc))
        typer.echo(out["title"])
        _results(out["results"])
