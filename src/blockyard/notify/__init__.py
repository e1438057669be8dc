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

from blockyard.notify.config import ALERT_ON, DEFAULT_ALERT_ON, NotificationConfig, load_notification_config
from blockyard.notify.message import Message, build_message, run_url
from blockyard.notify.sender import (
    ChannelResult,
    notify_run_finished,
    notify_sla_passed,
    send_alert,
    send_test_alert,
)
from blockyard.notify.templating import TemplateError, render_template, render_value
from blockyard.secrets import redact

__all__ = [
    "ALERT_ON",
    "DEFAULT_ALERT_ON",
    "ChannelResult",
    "Message",
    "NotificationConfig",
    "TemplateError",
    "build_message",
    "load_notification_config",
    "notify_run_finished",
    "notify_sla_passed",
    "redact",
    "render_template",
    "render_value",
    "run_url",
    "send_alert",
    "send_test_alert",
]
