"""Run alerts from Mage's `notification_config`: e-mail, Slack, Teams, Discord, Google Chat,
generic webhooks.

```python
from blockyard.notify import notify_run_finished, notify_sla_passed, send_test_alert
results = notify_run_finished(workspace, db, run_row)   # after a run ends (failed/completed)
results = notify_sla_passed(workspace, db, run_row)     # once, when a run passes its SLA
results = send_test_alert(workspace, "unit_1", pipeline=None, db=db)
[r.to_dict() for r in results]   # {channel, ok, event, target, error}
```
Rules on monitoring figures (`notification_config.rules`, one alert per episode and a
recovery notice): `blockyard.notify.rules.evaluate_rules(result)`; see docs/observability.md.
None of them raises; failures are logged (logger "blockyard.notify", without secrets)
and reported in the results. See docs/alerts-and-secrets.md.
"""
from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use (PEP 562): `blockyard` CLI start-up imports notify.cli, and
# the senders (smtplib, ssl, email, secrets) cost tens of ms a run that alerts nobody
# should not pay.
_HOME = {
    **dict.fromkeys(("ALERT_ON", "DEFAULT_ALERT_ON", "NotificationConfig", "load_notification_config"),
                    "blockyard.notify.config"),
    **dict.fromkeys(("Message", "build_message", "run_url"), "blockyard.notify.message"),
    **dict.fromkeys(("ChannelResult", "notify_run_finished", "notify_sla_passed", "send_alert", "send_test_alert"),
                    "blockyard.notify.sender"),
    **dict.fromkeys(("TemplateError", "render_template", "render_value"), "blockyard.notify.templating"),
    "redact": "blockyard.secrets",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'blockyard.notify' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
