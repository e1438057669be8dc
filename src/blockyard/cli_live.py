"""The live view of `blockyard run`: a Rich table of block states fed by run events."""
from __future__ import annotations


class LiveView:
    """A live table of block states; dynamic clones fold into their block's row."""

    def __init__(self, console) -> None:
        self.console = console
        self.rows: dict[str, dict] = {}
        self.live = None

    def __enter__(self):
        if not self.console.is_terminal:
            return self  # logs, CI: one line per finished block instead of a live table
        from rich.live import Live

        self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def _line(self, ev: dict) -> None:
        status = ev["status"]
        if status in ("running", "queued", "initial"):
            return
        parts = [ev["node"], status]
        if ev.get("duration") is not None:
            parts.append(f"{ev['duration']:.2f}s")
        if ev.get("cache_hit"):
            parts.append("cached, skipped")
        tests = ev.get("tests") or []
        if tests:
            parts.append(f"{sum(t['passed'] for t in tests)}/{len(tests)} tests")
        self.console.print("  ".join(parts), markup=False, highlight=False)

    def event(self, ev: dict) -> None:
        if ev.get("type") == "run_started":
            for b in ev["blocks"]:
                self.rows.setdefault(b, {"status": "initial", "clones": {}, "duration": None})
        elif ev.get("type") == "progress":
            row = self.rows.setdefault(ev["block"], {"status": "running", "clones": {}, "duration": None})
            total = f"/{ev['total']}" if ev.get("total") else ""
            text = f"{ev['done']}{total}"
            if ev.get("message"):
                text += f" {ev['message']}"
            row["progress"] = text if ev["node"] == ev["block"] else f"{ev['node']}: {text}"
        elif ev.get("type") == "sensor":  # a sensor said False and polls again
            row = self.rows.setdefault(ev["block"], {"status": "running", "clones": {}, "duration": None})
            row["status"] = "waiting"
            row["progress"] = f"poll {ev['polls']}: not yet, next in {ev['poke_interval']:g}s"
            if self.live is None:
                self.console.print(f"{ev['node']}  waiting  {row['progress']}", markup=False, highlight=False)
        elif ev.get("type") == "block":
            row = self.rows.setdefault(ev["block"], {"status": "initial", "clones": {}, "duration": None})
            if ev["node"] != ev["block"]:
                row["clones"][ev["node"]] = ev["status"]
            else:
                row["status"] = ev["status"]
                if ev.get("duration") is not None:
                    row["duration"] = ev["duration"]
                row["cache_hit"] = ev.get("cache_hit")
                tests = ev.get("tests") or []
                if tests:
                    row["tests"] = f"{sum(t['passed'] for t in tests)}/{len(tests)} tests"
        if self.live is not None:
            self.live.update(self._render())
        elif ev.get("type") == "block":
            self._line(ev)

    def _render(self):
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("block")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("")
        colors = {
            "completed": "green",
            "failed": "red",
            "upstream_failed": "red",
            "running": "yellow",
            "waiting": "yellow",
            "queued": "cyan",
            "condition_failed": "magenta",
            "cancelled": "red",
        }
        for uuid, row in self.rows.items():
            status = row["status"]
            note = []
            if row["clones"]:
                done = sum(1 for s in row["clones"].values() if s == "completed")
                failed = sum(1 for s in row["clones"].values() if s in ("failed", "upstream_failed"))
                running = sum(1 for s in row["clones"].values() if s == "running")
                status = "failed" if failed else ("running" if running or done < len(row["clones"]) else "completed")
                note.append(f"{done}/{len(row['clones'])} clones")
            if row.get("progress") and status in ("running", "waiting"):
                note.append(row["progress"])
            if row.get("cache_hit"):
                note.append("cached, skipped")
            if row.get("tests"):
                note.append(row["tests"])
            dur = f"{row['duration']:.2f}s" if row.get("duration") is not None else ""
            color = colors.get(status, "white")
            table.add_row(uuid, f"[{color}]{status}[/]", dur, ", ".join(note))
        return table
